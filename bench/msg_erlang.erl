%% Two Erlang nodes on this machine, distribution over loopback: the peer
%% the issue names for occasional's processes. Node B runs `server/0` (an
%% echo and a sink process, registered); node A runs `client/1`, which
%% times what bench/msg_floor and bench/msg_zmq time: an int64 each way per
%% round trip (the echo learns A's pid once, so messages are bare
%% integers), and N integers one way, timed by the sink from its first to
%% its last. Compiled by bench/messages.py at bench time (erlc).
-module(msg_erlang).
-export([server/0, client/1]).

server() ->
    register(echo, spawn(fun() -> echo_wait() end)),
    register(sink, spawn(fun() -> sink_wait() end)),
    ok.

echo_wait() ->
    receive {hello, From} -> echo(From) end.

echo(From) ->
    receive
        {bye, _} -> echo_wait();
        X -> From ! X, echo(From)
    end.

sink_wait() ->
    receive {start, From, N} -> sink(From, N, 0, 0) end.

sink(From, N, N, T0) ->
    From ! {done, erlang:monotonic_time(nanosecond) - T0, N},
    sink_wait();
sink(From, N, I, T0) ->
    receive
        I when I =:= 0 -> sink(From, N, 1, erlang:monotonic_time(nanosecond));
        I -> sink(From, N, I + 1, T0)
    end.

%% client([Node, Mode, N]): Mode pingpong | stream; prints one JSON line.
client([NodeS, Mode, NS]) ->
    Node = list_to_atom(NodeS),
    N = list_to_integer(NS),
    Echo = wait_for(Node, echo, 200),
    Sink = wait_for(Node, sink, 200),
    case Mode of
        "pingpong" ->
            Warmup = max(100, N div 10),
            Echo ! {hello, self()},
            Samples = ping(Echo, 0, Warmup + N, Warmup, []),
            Echo ! {bye, self()},
            io:format("~s~n", [round_trip_json(Samples)]);
        "stream" ->
            Sink ! {start, self(), N},
            send_stream(Sink, 0, N),
            receive
                {done, Ns, N} ->
                    io:format("{\"n\": ~b, \"seconds\": ~.6f, \"msgs_per_s\": ~b}~n",
                              [N, Ns / 1.0e9, round((N - 1) / (Ns / 1.0e9))])
            after 600000 -> io:format(standard_error, "msg_erlang: no done~n", []), halt(1)
            end
    end,
    halt(0).

wait_for(Node, Name, 0) ->
    io:format(standard_error, "msg_erlang: ~p not registered on ~p~n", [Name, Node]),
    halt(1);
wait_for(Node, Name, Tries) ->
    case rpc:call(Node, erlang, whereis, [Name]) of
        Pid when is_pid(Pid) -> Pid;
        _ -> receive after 50 -> wait_for(Node, Name, Tries - 1) end
    end.

ping(_Echo, Total, Total, _Warmup, Acc) -> Acc;
ping(Echo, I, Total, Warmup, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Echo ! I,
    receive I -> ok end,
    T1 = erlang:monotonic_time(nanosecond),
    Acc1 = if I >= Warmup -> [T1 - T0 | Acc]; true -> Acc end,
    ping(Echo, I + 1, Total, Warmup, Acc1).

send_stream(_Sink, N, N) -> ok;
send_stream(Sink, I, N) -> Sink ! I, send_stream(Sink, I + 1, N).

round_trip_json(Samples) ->
    S = list_to_tuple(lists:sort(Samples)),
    Len = tuple_size(S),
    At = fun(Q) -> element(min(Len, trunc(Q * Len) + 1), S) / 1000 end,
    Sum = lists:sum(Samples),
    io_lib:format("{\"n\": ~b, \"p50_us\": ~.3f, \"p99_us\": ~.3f, \"mean_us\": ~.3f, "
                  "\"round_trips_per_s\": ~b}",
                  [Len, At(0.5), At(0.99), Sum / Len / 1000, round(Len / (Sum / 1.0e9))]).
