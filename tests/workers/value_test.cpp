#include "workers/value.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace occasional {
// gtest prints values as Erlang would.
inline void PrintTo(const Value& v, std::ostream* os) {
  *os << v.to_string();
}

namespace {

Address addr(uint32_t id) {
  return Address{"occ@host", id, 0, 1};
}

TEST(Value, EachConstructorMakesItsKind) {
  EXPECT_EQ(Value().kind(), Value::Kind::null);
  EXPECT_EQ(Value(nullptr).kind(), Value::Kind::null);
  EXPECT_EQ(Value(true).kind(), Value::Kind::boolean);
  EXPECT_EQ(Value(42).kind(), Value::Kind::integer);
  EXPECT_EQ(Value(uint8_t{7}).kind(), Value::Kind::integer);
  EXPECT_EQ(Value(size_t{7}).kind(), Value::Kind::integer);
  EXPECT_EQ(Value(1.5).kind(), Value::Kind::floating);
  EXPECT_EQ(Value(1.5f).kind(), Value::Kind::floating);
  // A string literal is text, never a bool (const char* -> bool is a
  // standard conversion that would otherwise win).
  EXPECT_EQ(Value("foo").kind(), Value::Kind::string);
  EXPECT_EQ(Value(std::string("foo")).kind(), Value::Kind::string);
  EXPECT_EQ(Value(std::string_view("foo")).kind(), Value::Kind::string);
  const char* none = nullptr;
  EXPECT_EQ(Value(none).kind(), Value::Kind::null);
  EXPECT_EQ(binary("\x01").kind(), Value::Kind::binary);
  EXPECT_EQ(list().kind(), Value::Kind::list);
  EXPECT_EQ(tuple().kind(), Value::Kind::tuple);
  EXPECT_EQ(Value(Map{}).kind(), Value::Kind::map);
  EXPECT_EQ(Value(addr(1)).kind(), Value::Kind::address);
  EXPECT_EQ(Value(Reference{"occ@host", 1, 3, {1, 2, 3}}).kind(), Value::Kind::reference);
}

TEST(Value, IntegersAboveInt64MaxThrow) {
  EXPECT_EQ(Value(uint64_t{INT64_MAX}).as_int(), INT64_MAX);
  EXPECT_THROW(Value(uint64_t{INT64_MAX} + 1), std::out_of_range);
  EXPECT_EQ(Value(INT64_MIN).as_int(), INT64_MIN);
}

TEST(Value, AccessorsAnswerOnlyForTheirKind) {
  const Value i(42);
  EXPECT_EQ(i.as_int(), 42);
  EXPECT_FALSE(i.as_double());
  EXPECT_FALSE(i.as_bool());
  EXPECT_EQ(i.as_string(), nullptr);
  EXPECT_EQ(i.as_tuple(), nullptr);

  const Value d(2.0);
  EXPECT_EQ(d.as_double(), 2.0);
  EXPECT_FALSE(d.as_int());

  const Value s("foo");
  ASSERT_NE(s.as_string(), nullptr);
  EXPECT_EQ("hello " + *s.as_string(), "hello foo");
  EXPECT_EQ(s.as_binary(), nullptr);
  EXPECT_EQ(s.as_bytes(), "foo");

  const Value b = binary(std::string("\0\xff", 2));
  ASSERT_NE(b.as_binary(), nullptr);
  EXPECT_EQ(b.as_binary()->bytes, std::string("\0\xff", 2));
  EXPECT_EQ(b.as_string(), nullptr);
  EXPECT_EQ(b.as_bytes(), std::string_view("\0\xff", 2));
  EXPECT_FALSE(Value(1).as_bytes());
}

TEST(Value, IssueExampleShape) {
  // The shape of issue 24's say_hello: a tuple {address, name}.
  const Value m = tuple(addr(7), "foo");
  const Tuple* t = m.as_tuple();
  ASSERT_TRUE(t && t->size() == 2);
  ASSERT_NE((*t)[0].as_address(), nullptr);
  EXPECT_EQ(*(*t)[0].as_address(), addr(7));
  EXPECT_EQ(Value("hello " + *(*t)[1].as_string()), Value("hello foo"));
}

TEST(Value, MutableAccessorsEditInPlace) {
  Value v = list(1, 2);
  v.as_list()->push_back(3);
  EXPECT_EQ(v, list(1, 2, 3));
  Value s("a");
  *s.as_string() += "b";
  EXPECT_EQ(s, Value("ab"));
}

TEST(Value, EqualityIsExact) {
  EXPECT_EQ(Value(1), Value(int64_t{1}));
  EXPECT_NE(Value(1), Value(1.0));  // as Erlang's =:=
  EXPECT_NE(Value("a"), binary("a"));
  EXPECT_NE(list(1, 2), tuple(1, 2));
  EXPECT_NE(Value(0.0), Value(-0.0));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(Value(nan), Value(nan));  // reflexive, unlike IEEE ==
  EXPECT_NE(Value(), Value(false));
  EXPECT_NE(Value(addr(1)), Value(Address{"occ@host", 1, 0, 2}));  // creation counts
  EXPECT_EQ(tuple(1, list("a", binary("b")), Map{{1, 2}}),
            tuple(1, list("a", binary("b")), Map{{1, 2}}));
}

TEST(Value, OrderIsTotalAndByKindFirst) {
  // One value of each kind, in Kind order.
  const std::vector<Value> ordered = {
      Value(),
      Value(false),
      Value(true),
      Value(INT64_MIN),
      Value(-1),
      Value(INT64_MAX),
      Value(-1.0e300),
      Value(-0.0),
      Value(0.0),
      Value(1.0e300),
      Value(""),
      Value("a"),
      Value("b"),
      binary(""),
      binary("a"),
      list(),
      list(1),
      list(1, 2),
      list(2),
      tuple(),
      tuple(9),
      tuple(1, 1),
      Value(Map{}),
      Value(Map{{9, 9}}),
      Value(Map{{1, 1}, {2, 2}}),
      Value(addr(1)),
      Value(addr(2)),
      Value(Reference{"a@b", 0, 1, {5}}),
      Value(Reference{"a@b", 0, 2, {1, 1}}),
  };
  for (size_t i = 0; i < ordered.size(); ++i)
    for (size_t j = 0; j < ordered.size(); ++j)
      EXPECT_EQ(ordered[i] <=> ordered[j], i <=> j)
          << ordered[i].to_string() << " vs " << ordered[j].to_string();
}

TEST(Map, KeysAreSortedUniqueAndTheLastDuplicateWins) {
  const Map m{{"b", 1}, {"a", 2}, {"b", 3}};
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.begin()->first, Value("a"));
  EXPECT_EQ(*m.find("b"), Value(3));
  EXPECT_EQ(m.find("c"), nullptr);
  // Built in any order, equal maps are equal.
  EXPECT_EQ((Map{{1, "x"}, {2, "y"}}), (Map{{2, "y"}, {1, "x"}}));
  EXPECT_NE((Map{{1, "x"}}), (Map{{1, "y"}}));
}

TEST(Map, InsertFindErase) {
  Map m;
  m.insert_or_assign(tuple(1, 2), "t");
  m.insert_or_assign("k", 1);
  m.insert_or_assign("k", 2);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(*m.find("k"), Value(2));
  ASSERT_NE(m.find(tuple(1, 2)), nullptr);
  *m.find("k") = Value(5);
  EXPECT_EQ(*m.find("k"), Value(5));
  EXPECT_TRUE(m.erase("k"));
  EXPECT_FALSE(m.erase("k"));
  EXPECT_EQ(m.size(), 1u);
}

TEST(Map, FromEntriesRefusesDuplicateKeys) {
  EXPECT_FALSE(Map::from_entries({{1, 1}, {2, 2}, {1, 3}}));
  const std::optional<Map> m = Map::from_entries({{2, 2}, {1, 1}});
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, (Map{{1, 1}, {2, 2}}));
}

TEST(Value, ToStringIsErlangLike) {
  EXPECT_EQ(Value().to_string(), "undefined");
  EXPECT_EQ(Value(true).to_string(), "true");
  EXPECT_EQ(Value(-42).to_string(), "-42");
  EXPECT_EQ(Value(INT64_MIN).to_string(), "-9223372036854775808");
  EXPECT_EQ(Value(1.0).to_string(), "1.0");
  EXPECT_EQ(Value(0.1).to_string(), "0.1");
  EXPECT_EQ(Value(-0.0).to_string(), "-0.0");
  EXPECT_EQ(Value(1.0e20).to_string(), "1.0e20");
  EXPECT_EQ(Value(1.5e-7).to_string(), "1.5e-7");
  EXPECT_EQ(Value("a\"b\\\n\x01é").to_string(), "<<\"a\\\"b\\\\\\n\\x01é\">>");
  EXPECT_EQ(binary(std::string("\0\xff", 2)).to_string(), "<<0,255>>");
  EXPECT_EQ(binary("").to_string(), "<<>>");
  EXPECT_EQ(list(1, list(), tuple()).to_string(), "[1,[],{}]");
  EXPECT_EQ(Value(Map{{"b", 2}, {"a", list()}}).to_string(), "#{<<\"a\">> => [],<<\"b\">> => 2}");
  EXPECT_EQ(Value(Address{"occ@h", 7, 1, 3}).to_string(), "#Pid<occ@h.7.1.3>");
  EXPECT_EQ(Value(Reference{"occ@h", 3, 2, {10, 20}}).to_string(), "#Ref<occ@h.3.10.20>");
}

}  // namespace
}  // namespace occasional
