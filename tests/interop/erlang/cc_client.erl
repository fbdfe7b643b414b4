%% A credit-control client built on Erlang/OTP's diameter application and its RFC 4006
%% dictionary (compiled from OTP's examples/dict by `make interop`): CER, CCR INITIAL, UPDATE,
%% TERMINATION with Multiple-Services-Credit-Control, an EVENT, DWR (its watchdog, Tw = 6 s)
%% and DPR, against the server at 127.0.0.1:Port. One line per answer on stdout:
%%   ANSWER <step> <Result-Code> <Rating-Group>:<MSCC Result-Code>:<granted octets or units> ...
%%   ERRORS <step> <the decode errors diameter reported for that answer>
%% Exit status 0 once every step was answered.
-module(cc_client).
-export([main/1, handle_answer/4, handle_error/4, prepare_request/3, pick_peer/4,
         peer_up/3, peer_down/3, handle_request/3, prepare_retransmit/3]).

-include_lib("diameter/include/diameter.hrl").

-define(SVC, ocs_interop).
-define(HOST, "erl.test.local").
-define(REALM, "test.local").

main([PortText, Subscriber]) ->
    Port = list_to_integer(PortText),
    ok = diameter:start(),
    ok = diameter:start_service(?SVC, [
        {'Origin-Host', ?HOST},
        {'Origin-Realm', ?REALM},
        {'Vendor-Id', 0},
        {'Product-Name', "erlang-diameter"},
        {'Auth-Application-Id', [4]}, % not added from the applications: WIRE.md 4 wants it
        {decode_format, map},
        {strict_mbit, false}, % the grants' 3GPP AVPs (V and M bits) are not in RFC 4006
        {string_decode, false},
        {application, [{alias, cc}, {dictionary, diameter_gen_rfc4006_cc}, {module, ?MODULE},
                       {answer_errors, callback}]}
    ]),
    {ok, _} = diameter:add_transport(?SVC, {connect, [
        {transport_module, diameter_tcp},
        {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port}]},
        {watchdog_timer, 6000}
    ]}),
    ok = wait_up(50),
    Sid = diameter:session_id(?HOST),
    Sub = [[{'Subscription-Id-Type', 0}, {'Subscription-Id-Data', Subscriber}]],
    call(initial, ccr(Sid, 1, 0, [{'Subscription-Id', Sub},
        {'Multiple-Services-Credit-Control',
         [[{'Rating-Group', [20]},
           {'Requested-Service-Unit', [[{'CC-Total-Octets', [10 * 1048576]}]]}]]}])),
    call(update, ccr(Sid, 2, 1, [
        {'Multiple-Services-Credit-Control',
         [[{'Rating-Group', [20]},
           {'Requested-Service-Unit', [[{'CC-Total-Octets', [10 * 1048576]}]]},
           {'Used-Service-Unit', [[{'CC-Total-Octets', [4 * 1048576]}]]}]]}])),
    timer:sleep(9000), % Tw (6 s, +-2 s of jitter) passes: a DWR, answered DWA
    call(termination, ccr(Sid, 3, 2, [{'Termination-Cause', [1]},
        {'Multiple-Services-Credit-Control',
         [[{'Rating-Group', [20]},
           {'Used-Service-Unit', [[{'CC-Total-Octets', [3 * 1048576]}]]}]]}])),
    Eid = diameter:session_id(?HOST),
    call(event, ccr(Eid, 4, 0, [{'Subscription-Id', Sub}, {'Requested-Action', [0]},
        {'Event-Timestamp', [{{2026, 6, 1}, {12, 0, 0}}]},
        {'Multiple-Services-Credit-Control',
         [[{'Rating-Group', [30]},
           {'Requested-Service-Unit', [[{'CC-Service-Specific-Units', [1]}]]}]]}],
        "32274@3gpp.org")),
    ok = diameter:stop_service(?SVC), % DPR / DPA
    io:format("DONE~n"),
    halt(0).

ccr(Sid, Type, Number, Avps) ->
    ccr(Sid, Type, Number, Avps, "32251@3gpp.org").

ccr(Sid, Type, Number, Avps, Context) ->
    ['CCR', {'Session-Id', Sid}, {'Origin-Host', ?HOST}, {'Origin-Realm', ?REALM},
     {'Destination-Realm', ?REALM}, {'Auth-Application-Id', 4},
     {'Service-Context-Id', Context}, {'CC-Request-Type', Type},
     {'CC-Request-Number', Number} | Avps].

call(Step, Request) ->
    case diameter:call(?SVC, cc, Request, [{timeout, 5000}]) of
        {answer, ['CCA' | Answer], Errors} ->
            report(Step, Answer),
            io:format("ERRORS ~p ~0p~n", [Step, Errors]);
        ['CCA' | Answer] ->
            report(Step, Answer);
        Other ->
            io:format("FAILED ~p ~0p~n", [Step, Other]),
            halt(1)
    end.

report(Step, Answer) ->
    Msccs = [mscc(M) || M <- maps:get('Multiple-Services-Credit-Control', Answer, [])],
    io:format("ANSWER ~p ~p~s~n", [Step, maps:get('Result-Code', Answer), Msccs]).

mscc(M) ->
    [Rg] = maps:get('Rating-Group', M, [none]),
    [Rc] = maps:get('Result-Code', M, [none]),
    Granted = case maps:get('Granted-Service-Unit', M, []) of
        [G] -> hd(maps:get('CC-Total-Octets', G, []) ++ maps:get('CC-Service-Specific-Units', G, [none]));
        [] -> none
    end,
    io_lib:format(" ~p:~p:~p", [Rg, Rc, Granted]).

wait_up(0) -> {error, no_peer};
wait_up(N) ->
    case diameter:service_info(?SVC, connections) of
        [_ | _] -> ok;
        _ -> timer:sleep(100), wait_up(N - 1)
    end.

%% diameter_app callbacks
peer_up(_Svc, _Peer, State) -> State.
peer_down(_Svc, _Peer, State) -> State.
pick_peer([Peer | _], _, _Svc, _State) -> {ok, Peer}.
prepare_request(Pkt, _Svc, _Peer) -> {send, Pkt}.
prepare_retransmit(Pkt, _Svc, _Peer) -> {send, Pkt}.
handle_answer(#diameter_packet{msg = Msg, errors = []}, _Request, _Svc, _Peer) -> Msg;
handle_answer(#diameter_packet{msg = Msg, errors = Errors}, _Request, _Svc, _Peer) ->
    {answer, Msg, Errors}.
handle_error(Reason, _Request, _Svc, _Peer) -> {error, Reason}.
handle_request(_Pkt, _Svc, _Peer) -> {answer_message, 3001}.
