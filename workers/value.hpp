#pragma once

#include <array>
#include <compare>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace occasional {

// The values processes send each other: plain data, copied, never shared.
// docs/messages.md maps each kind to the wire (Erlang's External Term
// Format) and to what an Erlang or Python peer sees.

// A process's address, an Erlang pid on the wire (NEW_PID_EXT). The
// coordinator hands them out: `node` names the coordinator, `creation` tells
// its starts apart (an address from an earlier run never matches a live
// process), `id` and `serial` number the process within that start.
struct Address {
  std::string node;  // an Erlang atom's text: at most 255 characters of UTF-8
  uint32_t id = 0;
  uint32_t serial = 0;
  uint32_t creation = 0;

  friend bool operator==(const Address&, const Address&) = default;
  friend std::strong_ordering operator<=>(const Address&, const Address&) = default;
};

// A unique token (monitor references, request tags), an Erlang reference on
// the wire (NEWER_REFERENCE_EXT): the node and creation that made it and up
// to five 32-bit words, uninterpreted. Words past `size` are always zero, so
// the defaulted comparisons are exact.
struct Reference {
  static constexpr size_t kMaxWords = 5;  // what Erlang/OTP 25 accepts

  std::string node;
  uint32_t creation = 0;
  uint8_t size = 0;
  std::array<uint32_t, kMaxWords> words{};

  friend bool operator==(const Reference&, const Reference&) = default;
  friend std::strong_ordering operator<=>(const Reference&, const Reference&) = default;
};

class Value;

// Bytes that are not text. A distinct type so that Value(Binary{...}) and
// Value(std::string) stay different kinds, on the wire too.
struct Binary {
  std::string bytes;

  friend bool operator==(const Binary&, const Binary&) = default;
  friend std::strong_ordering operator<=>(const Binary&, const Binary&) = default;
};

// Lists and tuples are both sequences; they are distinct kinds (Erlang's
// [a, b] and {a, b}), so each gets its own type with the whole vector API.
struct List : std::vector<Value> {
  using std::vector<Value>::vector;
};
struct Tuple : std::vector<Value> {
  using std::vector<Value>::vector;
};

// A map with Value keys, kept sorted by Value's total order (operator<=>) with
// unique keys: equal maps have equal entries in equal order, whatever order
// they were built in, and lookup is a binary search.
class Map {
 public:
  using Entry = std::pair<Value, Value>;
  using const_iterator = std::vector<Entry>::const_iterator;

  Map() = default;
  // As an Erlang map literal: a later duplicate key wins.
  Map(std::initializer_list<Entry> entries);

  // nullptr when absent.
  const Value* find(const Value& key) const;
  Value* find(const Value& key);
  // Replaces the value of an existing key.
  void insert_or_assign(Value key, Value value);
  bool erase(const Value& key);

  size_t size() const;
  bool empty() const;
  const_iterator begin() const;
  const_iterator end() const;

  // For the decoder: entries in any order; empty if two keys are equal.
  static std::optional<Map> from_entries(std::vector<Entry> entries);

  friend bool operator==(const Map& a, const Map& b);
  friend std::strong_ordering operator<=>(const Map& a, const Map& b);

 private:
  std::vector<Entry> entries_;
};

class Value {
 public:
  // The order of the kinds is the first step of the total order.
  enum class Kind {
    null,
    boolean,
    integer,
    floating,
    string,
    binary,
    list,
    tuple,
    map,
    address,
    reference,
  };

  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : data_(b) {}
  // Any integer type. Unsigned values above INT64_MAX throw std::out_of_range:
  // the wire's integers are int64 here.
  template <std::integral T>
  requires(!std::same_as<T, bool>) Value(T i) : data_(to_int64(i)) {}
  Value(double d) : data_(d) {}
  // Text, UTF-8. The encoder refuses a string that is not valid UTF-8.
  // A null `const char*` makes a null Value, not undefined behaviour.
  Value(const char* s) {
    if (s) data_ = std::string(s);
  }
  Value(std::string s) : data_(std::move(s)) {}
  Value(std::string_view s) : data_(std::string(s)) {}
  Value(Binary b) : data_(std::move(b)) {}
  Value(List l) : data_(std::move(l)) {}
  Value(Tuple t) : data_(std::move(t)) {}
  Value(Map m) : data_(std::move(m)) {}
  Value(Address a) : data_(std::move(a)) {}
  Value(Reference r) : data_(std::move(r)) {}

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_null() const { return kind() == Kind::null; }

  // Scalars by value, the rest by pointer into this Value; empty / nullptr
  // when the kind differs (an integer is never a double, or the reverse).
  std::optional<bool> as_bool() const;
  std::optional<int64_t> as_int() const;
  std::optional<double> as_double() const;
  const std::string* as_string() const { return std::get_if<std::string>(&data_); }
  const Binary* as_binary() const { return std::get_if<Binary>(&data_); }
  const List* as_list() const { return std::get_if<List>(&data_); }
  const Tuple* as_tuple() const { return std::get_if<Tuple>(&data_); }
  const Map* as_map() const { return std::get_if<Map>(&data_); }
  const Address* as_address() const { return std::get_if<Address>(&data_); }
  const Reference* as_reference() const { return std::get_if<Reference>(&data_); }
  std::string* as_string() { return std::get_if<std::string>(&data_); }
  Binary* as_binary() { return std::get_if<Binary>(&data_); }
  List* as_list() { return std::get_if<List>(&data_); }
  Tuple* as_tuple() { return std::get_if<Tuple>(&data_); }
  Map* as_map() { return std::get_if<Map>(&data_); }
  // The bytes of a string or a binary: a peer that cannot send binaries in
  // their own form sends them like strings (docs/messages.md).
  std::optional<std::string_view> as_bytes() const;

  // Erlang-like: undefined, true, 42, 1.5, <<"text">>, <<1,2>>, [1,2], {a,b},
  // #{k => v}, #Pid<node.id.serial.creation>, #Ref<node.creation.w0.w1...>.
  std::string to_string() const;

  // Exact equality (1 and 1.0 differ, as with Erlang's =:=; doubles compare
  // by bits, so 0.0 and -0.0 differ and a NaN equals itself). The order is
  // total: by kind first (the order of Kind), then by content; strings and
  // binaries bytewise, lists and tuples lexicographically, maps entry by entry.
  friend bool operator==(const Value& a, const Value& b);
  friend std::strong_ordering operator<=>(const Value& a, const Value& b);

 private:
  template <std::integral T>
  static int64_t to_int64(T i) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(int64_t)) {
      if (i > static_cast<T>(std::numeric_limits<int64_t>::max()))
        throw std::out_of_range("occasional::Value: integer above INT64_MAX");
    }
    return static_cast<int64_t>(i);
  }

  std::variant<std::monostate, bool, int64_t, double, std::string, Binary, List, Tuple, Map,
               Address, Reference>
      data_;
};

// Cheap to write in user code: tuple(self, "foo"), list(1, 2, 3),
// binary("\x01\x02"), Value(Map{{"k", 1}, {"j", list()}}).
template <typename... Args>
Value tuple(Args&&... args) {
  Tuple t;
  t.reserve(sizeof...(Args));
  (t.emplace_back(std::forward<Args>(args)), ...);
  return Value(std::move(t));
}

template <typename... Args>
Value list(Args&&... args) {
  List l;
  l.reserve(sizeof...(Args));
  (l.emplace_back(std::forward<Args>(args)), ...);
  return Value(std::move(l));
}

inline size_t Map::size() const {
  return entries_.size();
}
inline bool Map::empty() const {
  return entries_.empty();
}
inline Map::const_iterator Map::begin() const {
  return entries_.begin();
}
inline Map::const_iterator Map::end() const {
  return entries_.end();
}

inline Value binary(std::string_view bytes) {
  return Value(Binary{std::string(bytes)});
}

}  // namespace occasional
