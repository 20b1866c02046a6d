// The C++ side of the Erlang cross-check (etf_erlang_test.py):
//   etf_tool encode DIR     writes DIR/NAME.etf for a built-in table of values,
//                           with DIR/NAME.check, an Erlang expression over X
//                           (the decoded term) and Bin (the bytes) that must
//                           be true, and DIR/NAME.txt, the value's to_string
//   etf_tool decode FILE..  one line per file: the value's to_string, or
//                           "error: REASON" (the message goes to stderr)
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "workers/etf.hpp"

namespace {

using namespace occasional;

struct Case {
  std::string name;
  Value value;
  std::string check;  // Erlang; `exact` adds: term_to_binary(X) =:= Bin
  bool exact = false;
};

Value seq(int64_t from, int64_t to, bool as_tuple) {
  std::vector<Value> items;
  for (int64_t i = from; i <= to; ++i) items.emplace_back(i);
  if (as_tuple) return Value(Tuple(items.begin(), items.end()));
  return Value(List(items.begin(), items.end()));
}

Value nested(int depth) {
  Value v = list();
  for (int i = 0; i < depth; ++i) v = list(std::move(v));
  return v;
}

std::vector<Case> table() {
  std::vector<Case> t = {
      {"null", Value(), "X =:= undefined"},
      {"true", true, "X =:= true"},
      {"false", false, "X =:= false"},
      {"int_0", 0, "X =:= 0", true},
      {"int_255", 255, "X =:= 255", true},
      {"int_256", 256, "X =:= 256", true},
      {"int_minus_1", -1, "X =:= -1", true},
      {"int_2p31_minus_1", INT32_MAX, "X =:= 2147483647", true},
      {"int_2p31", int64_t{INT32_MAX} + 1, "X =:= 2147483648", true},
      {"int_minus_2p31", INT32_MIN, "X =:= -2147483648", true},
      {"int_minus_2p31_minus_1", int64_t{INT32_MIN} - 1, "X =:= -2147483649", true},
      {"int64_max", INT64_MAX, "X =:= 9223372036854775807", true},
      {"int64_min", INT64_MIN, "X =:= -9223372036854775808", true},
      {"float_1_5", 1.5, "X =:= 1.5", true},
      {"float_0_1", 0.1, "X =:= 0.1", true},
      // OTP 25 has 0.0 =:= -0.0; the exact bytes keep the sign.
      {"float_minus_0", -0.0, "X == 0.0 andalso is_float(X)", true},
      {"float_max", 1.7976931348623157e308, "X =:= 1.7976931348623157e308", true},
      {"float_min_denormal", 5.0e-324, "X =:= 5.0e-324", true},
      {"string_empty", "", "X =:= <<>>", true},
      {"string_ascii", "hello foo", "X =:= <<\"hello foo\">>", true},
      {"string_unicode", "héllo ✓", "X =:= <<\"héllo ✓\"/utf8>>", true},
      {"string_nul_quote", std::string("a\0\"b", 4), "X =:= <<\"a\", 0, \"\\\"b\">>", true},
      {"binary_empty", binary(""), "X =:= <<>>"},
      {"binary_bytes", binary(std::string("\0\xff\x80", 3)), "X =:= <<0, 255, 128>>"},
      {"binary_text", binary("text"), "X =:= <<\"text\">>"},
      {"list_empty", list(), "X =:= []", true},
      {"list_mixed", list(1, "a", list(), tuple()), "X =:= [1, <<\"a\">>, [], {}]", true},
      {"list_small_ints", list(1, 2, 3), "X =:= [1, 2, 3]"},
      {"list_1000", seq(1, 1000, false), "X =:= lists:seq(1, 1000)"},
      {"tuple_empty", tuple(), "X =:= {}", true},
      {"tuple_nested", tuple(1, tuple(2, tuple(3))), "X =:= {1, {2, {3}}}", true},
      {"tuple_256", seq(1, 256, true), "X =:= list_to_tuple(lists:seq(1, 256))", true},
      {"map_empty", Value(Map{}), "X =:= #{}", true},
      {"map_ints", Value(Map{{2, 20}, {1, 10}}), "X =:= #{1 => 10, 2 => 20}", true},
      {"map_mixed", Value(Map{{"k", list(1)}, {tuple(1, 2), Map{{"x", Value()}}}, {1.5, true}}),
       "X =:= #{<<\"k\">> => [1], {1, 2} => #{<<\"x\">> => undefined}, 1.5 => true}"},
      {"map_40", Value([] {
         Map m;
         for (int i = 1; i <= 40; ++i) m.insert_or_assign(i, i * i);
         return m;
       }()),
       "X =:= maps:from_list([{I, I * I} || I <- lists:seq(1, 40)])"},
      {"nested_128", nested(128), "X =:= lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 128))",
       true},
      {"address", Address{"occasional@localhost", 42, 7, 3},
       "is_pid(X) andalso node(X) =:= 'occasional@localhost' andalso "
       "pid_fields(X) =:= {'occasional@localhost', 42, 7, 3}"},
      {"address_max", Address{"a@b", UINT32_MAX, UINT32_MAX, UINT32_MAX},
       "pid_fields(X) =:= {'a@b', 4294967295, 4294967295, 4294967295}"},
      {"address_unicode_node", Address{"nødé@høst", 1, 0, 1},
       "node(X) =:= 'nødé@høst' andalso pid_fields(X) =:= {'nødé@høst', 1, 0, 1}"},
      {"reference", Reference{"occasional@localhost", 3, 3, {1, 2, 0xFFFFFFFF}},
       "is_reference(X) andalso node(X) =:= 'occasional@localhost' andalso "
       "ref_fields(X) =:= {'occasional@localhost', 3, [1, 2, 4294967295]}"},
      {"reference_5", Reference{"a@b", 1, 5, {1, 2, 3, 4, 5}},
       "ref_fields(X) =:= {'a@b', 1, [1, 2, 3, 4, 5]}"},
      {"message", tuple(Address{"occasional@localhost", 1, 0, 1}, "foo"),
       "{P, <<\"foo\">>} = X, pid_fields(P) =:= {'occasional@localhost', 1, 0, 1}"},
  };
  return t;
}

bool write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
  return static_cast<bool>(f);
}

int encode_all(const std::string& dir) {
  for (const Case& c : table()) {
    std::string bytes;
    etf::Error error;
    if (!etf::encode(c.value, bytes, error)) {
      std::cerr << c.name << ": " << error.message() << "\n";
      return 1;
    }
    const std::string check =
        c.exact ? "(" + c.check + ") andalso term_to_binary(X) =:= Bin" : c.check;
    if (!write_file(dir + "/" + c.name + ".etf", bytes) ||
        !write_file(dir + "/" + c.name + ".check", check + ".\n") ||
        !write_file(dir + "/" + c.name + ".txt", c.value.to_string() + "\n")) {
      std::cerr << dir << ": cannot write " << c.name << "\n";
      return 1;
    }
  }
  return 0;
}

int decode_files(int argc, char** argv) {
  int status = 0;
  for (int i = 2; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    if (!f) {
      std::cerr << argv[i] << ": cannot read\n";
      status = 1;
      std::cout << "error: unreadable\n";
      continue;
    }
    const std::string bytes{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    etf::Error error;
    if (const std::optional<Value> v = etf::decode(bytes, error)) {
      std::cout << v->to_string() << "\n";
    } else {
      std::cout << "error: " << etf::errc_name(error.code) << "\n";
      std::cerr << argv[i] << ": " << error.message() << "\n";
    }
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "encode" && argc == 3) return encode_all(argv[2]);
  if (mode == "decode") return decode_files(argc, argv);
  std::cerr << "usage: etf_tool encode DIR | etf_tool decode FILE...\n";
  return 2;
}
