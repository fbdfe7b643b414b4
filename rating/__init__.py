"""Pure rating: catalog, money, price and inverse price. No I/O."""
