#!/usr/bin/env escript
%% -*- erlang -*-
%% The Erlang side of the cross-check (etf_erlang_test.py), run by the real
%% runtime (Debian erlang-base):
%%   etf_peer.escript check DIR   binary_to_term each DIR/NAME.etf that
%%                                occasional wrote; its DIR/NAME.check must be
%%                                true. Prints "ok NAME" or "FAIL NAME: why".
%%   etf_peer.escript write DIR   term_to_binary a table of Erlang terms to
%%                                DIR/NAME.etf, with DIR/NAME.expected: what
%%                                occasional must print for it (to_string, or
%%                                "error: REASON").
-mode(compile).

main(["check", Dir]) ->
    Names = [filename:basename(F, ".etf") || F <- filelib:wildcard(filename:join(Dir, "*.etf"))],
    Results = [check(Dir, N) || N <- lists:sort(Names)],
    io:format("checked ~b~n", [length(Results)]),
    halt(case lists:all(fun(R) -> R end, Results) andalso Results =/= [] of true -> 0; false -> 1 end);
main(["write", Dir]) ->
    Cases = cases(),
    lists:foreach(fun({Name, Term, Expected}) ->
                          Bytes = case Term of {'$raw', B} -> B; _ -> term_to_binary(Term) end,
                          ok = file:write_file(filename:join(Dir, Name ++ ".etf"), Bytes),
                          ok = file:write_file(filename:join(Dir, Name ++ ".expected"),
                                               unicode:characters_to_binary([Expected, "\n"]))
                  end, Cases),
    io:format("wrote ~b~n", [length(Cases)]);
main(_) ->
    io:format(standard_error, "usage: etf_peer.escript check|write DIR~n", []),
    halt(2).

check(Dir, Name) ->
    {ok, Bin} = file:read_file(filename:join(Dir, Name ++ ".etf")),
    {ok, Src} = file:read_file(filename:join(Dir, Name ++ ".check")),
    Result =
        try
            X = binary_to_term(Bin),
            {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Src)),
            {ok, Exprs} = erl_parse:parse_exprs(Tokens),
            Bindings = erl_eval:add_binding('Bin', Bin, erl_eval:add_binding('X', X, erl_eval:new_bindings())),
            {value, V, _} = erl_eval:exprs(Exprs, Bindings, {value, fun local/2}),
            {V, X}
        catch
            Class:Reason -> {{Class, Reason}, undefined}
        end,
    case Result of
        {true, _} -> io:format("ok ~s~n", [Name]), true;
        {Other, Term} -> io:format("FAIL ~s: ~tp for ~tp (check: ~ts)~n", [Name, Other, Term, Src]), false
    end.

%% Functions a .check expression may call: the fields of a pid or reference
%% as erl's own term_to_binary writes them.
local(pid_fields, [P]) -> pid_fields(P);
local(ref_fields, [R]) -> ref_fields(R).

atom_rest(<<100, L:16, A:L/binary, Rest/binary>>) -> {binary_to_atom(A, latin1), Rest};
atom_rest(<<115, L:8, A:L/binary, Rest/binary>>) -> {binary_to_atom(A, latin1), Rest};
atom_rest(<<118, L:16, A:L/binary, Rest/binary>>) -> {binary_to_atom(A, utf8), Rest};
atom_rest(<<119, L:8, A:L/binary, Rest/binary>>) -> {binary_to_atom(A, utf8), Rest}.

pid_fields(P) when is_pid(P) ->
    <<131, 88, Rest/binary>> = term_to_binary(P),
    {Node, <<Id:32, Serial:32, Creation:32>>} = atom_rest(Rest),
    {Node, Id, Serial, Creation}.

ref_fields(R) when is_reference(R) ->
    <<131, 90, Len:16, Rest/binary>> = term_to_binary(R),
    {Node, <<Creation:32, Words/binary>>} = atom_rest(Rest),
    Len = byte_size(Words) div 4,
    {Node, Creation, [W || <<W:32>> <= Words]}.

%% Pids and references print as occasional's to_string does.
pid_text(P) ->
    {Node, Id, Serial, Creation} = pid_fields(P),
    io_lib:format("#Pid<~ts.~b.~b.~b>", [atom_to_list(Node), Id, Serial, Creation]).

ref_text(R) ->
    {Node, Creation, Words} = ref_fields(R),
    ["#Ref<", atom_to_list(Node), ".", integer_to_list(Creation),
     [["." , integer_to_list(W)] || W <- Words], ">"].

join(Items) -> lists:join(",", Items).

cases() ->
    Self = self(),
    Spawned = spawn(fun() -> receive stop -> ok end end),
    Ref = make_ref(),
    MonitorRef = erlang:monitor(process, Spawned),
    Deep = fun(N) -> lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, N)) end,
    Ints = fun(L) -> join([integer_to_list(I) || I <- L]) end,
    Map40 = maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]),
    [{"int_0", 0, "0"},
     {"int_255", 255, "255"},
     {"int_256", 256, "256"},
     {"int_minus_1", -1, "-1"},
     {"int_2p31_minus_1", 16#7fffffff, "2147483647"},
     {"int_2p31", 16#80000000, "2147483648"},
     {"int_minus_2p31_minus_1", -16#80000001, "-2147483649"},
     {"int64_max", 16#7fffffffffffffff, "9223372036854775807"},
     {"int64_min", -16#8000000000000000, "-9223372036854775808"},
     {"int_2p63", 16#8000000000000000, "error: integer_out_of_range"},
     {"int_minus_2p63_minus_1", -16#8000000000000001, "error: integer_out_of_range"},
     {"int_2p100", 1 bsl 100, "error: integer_out_of_range"},
     {"int_large_big", 1 bsl 2100, "error: integer_out_of_range"},
     {"float_1_5", 1.5, "1.5"},
     {"float_0_1", 0.1, "0.1"},
     {"float_minus_0", -0.0, "-0.0"},
     {"float_1e20", 1.0e20, "1.0e20"},
     {"float_1e_minus_5", 1.0e-5, "1.0e-5"},
     {"float_123456789", 123456789.0, "123456789.0"},
     {"float_max", 1.7976931348623157e308, "1.7976931348623157e308"},
     {"atom_true", true, "true"},
     {"atom_false", false, "false"},
     {"atom_undefined", undefined, "undefined"},
     {"atom_nil", nil, "undefined"},
     {"atom_ok", ok, "error: unsupported_atom"},
     {"atom_in_tuple", {ok, 1}, "error: unsupported_atom"},
     {"binary_utf8", <<"héllo ✓"/utf8>>, "<<\"héllo ✓\">>"},
     {"binary_empty", <<>>, "<<\"\">>"},
     {"binary_not_utf8", <<255, 0, 128>>, "<<255,0,128>>"},
     {"bitstring", <<1:3>>, "error: bitstring"},
     {"list_empty", [], "[]"},
     {"list_string_ext", [1, 2, 3], "[1,2,3]"},
     {"list_mixed", [1000, <<"a">>, {}, []], "[1000,<<\"a\">>,{},[]]"},
     {"list_300", lists:seq(1, 300), ["[", Ints(lists:seq(1, 300)), "]"]},
     {"list_improper", [1 | 2], "error: improper_list"},
     {"tuple_empty", {}, "{}"},
     {"tuple_nested", {1, {2, {3}}}, "{1,{2,{3}}}"},
     {"tuple_256", list_to_tuple(lists:seq(1, 256)), ["{", Ints(lists:seq(1, 256)), "}"]},
     {"map_empty", #{}, "#{}"},
     {"map_mixed", #{<<"b">> => 1, <<"a">> => [2], 2.0 => 3, 1 => undefined},
      "#{1 => undefined,2.0 => 3,<<\"a\">> => [2],<<\"b\">> => 1}"},
     {"map_40", Map40,
      ["#{", join([[integer_to_list(I), " => ", integer_to_list(I * I)] || I <- lists:seq(1, 40)]), "}"]},
     {"nested_128", Deep(128), [lists:duplicate(128, "["), "[]", lists:duplicate(128, "]")]},
     {"nested_129", Deep(129), "error: too_deep"},
     {"pid_self", Self, pid_text(Self)},
     {"pid_spawned", {Spawned, <<"foo">>}, ["{", pid_text(Spawned), ",<<\"foo\">>}"]},
     {"ref", Ref, ref_text(Ref)},
     {"ref_monitor", MonitorRef, ref_text(MonitorRef)},
     {"fun", fun() -> ok end, "error: unsupported_tag"},
     {"port", hd(erlang:ports()), "error: unsupported_tag"},
     {"compressed", {'$raw', term_to_binary(lists:duplicate(100, <<"x">>), [compressed])},
      "error: unsupported_tag"}].
