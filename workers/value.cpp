#include "workers/value.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace occasional {

namespace {

bool key_less(const Map::Entry& a, const Map::Entry& b) {
  return a.first < b.first;
}

// Erlang's shortest form: 1.0, 0.1, 1.0e20, 1.5e-7 (never "1" or "1e+20", so
// that a double never reads as an integer).
void append_double(std::string& out, double d) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  std::string_view s(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
  if (s == "inf" || s == "-inf" || s.find("nan") != std::string_view::npos) {
    out += s;
    return;
  }
  const size_t e = s.find('e');
  std::string_view mantissa = s.substr(0, e);
  out += mantissa;
  if (mantissa.find('.') == std::string_view::npos) out += ".0";
  if (e != std::string_view::npos) {
    std::string_view exponent = s.substr(e + 1);
    out += 'e';
    if (!exponent.empty() && exponent[0] == '+') exponent.remove_prefix(1);
    if (!exponent.empty() && exponent[0] == '-') {
      out += '-';
      exponent.remove_prefix(1);
    }
    while (exponent.size() > 1 && exponent[0] == '0') exponent.remove_prefix(1);
    out += exponent;
  }
}

void append_quoted(std::string& out, std::string_view s) {
  out += "<<\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02X", u);
          out += hex;
        } else {
          out += c;  // UTF-8 continues as it is
        }
    }
  }
  out += "\">>";
}

void append_value(std::string& out, const Value& v);

void append_sequence(std::string& out, const std::vector<Value>& items, char open, char close) {
  out += open;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    append_value(out, items[i]);
  }
  out += close;
}

void append_value(std::string& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::null:
      out += "undefined";
      return;
    case Value::Kind::boolean:
      out += *v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::integer:
      out += std::to_string(*v.as_int());
      return;
    case Value::Kind::floating:
      append_double(out, *v.as_double());
      return;
    case Value::Kind::string:
      append_quoted(out, *v.as_string());
      return;
    case Value::Kind::binary: {
      out += "<<";
      const std::string& bytes = v.as_binary()->bytes;
      for (size_t i = 0; i < bytes.size(); ++i) {
        if (i) out += ',';
        out += std::to_string(static_cast<unsigned char>(bytes[i]));
      }
      out += ">>";
      return;
    }
    case Value::Kind::list:
      append_sequence(out, *v.as_list(), '[', ']');
      return;
    case Value::Kind::tuple:
      append_sequence(out, *v.as_tuple(), '{', '}');
      return;
    case Value::Kind::map: {
      out += "#{";
      bool first = true;
      for (const auto& [key, value] : *v.as_map()) {
        if (!first) out += ',';
        first = false;
        append_value(out, key);
        out += " => ";
        append_value(out, value);
      }
      out += '}';
      return;
    }
    case Value::Kind::address: {
      const Address& a = *v.as_address();
      out += "#Pid<" + a.node + '.' + std::to_string(a.id) + '.' + std::to_string(a.serial) + '.' +
             std::to_string(a.creation) + '>';
      return;
    }
    case Value::Kind::reference: {
      const Reference& r = *v.as_reference();
      out += "#Ref<" + r.node + '.' + std::to_string(r.creation);
      for (size_t i = 0; i < r.size; ++i) out += '.' + std::to_string(r.words[i]);
      out += '>';
      return;
    }
  }
}

}  // namespace

Map::Map(std::initializer_list<Entry> entries) {
  // stable_sort keeps equal keys in the order written, so the last one wins.
  std::vector<Entry> sorted(entries);
  std::stable_sort(sorted.begin(), sorted.end(), key_less);
  for (auto& entry : sorted) {
    if (!entries_.empty() && entries_.back().first == entry.first)
      entries_.back().second = std::move(entry.second);
    else
      entries_.push_back(std::move(entry));
  }
}

const Value* Map::find(const Value& key) const {
  const auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                                   [](const Entry& e, const Value& k) { return e.first < k; });
  return it != entries_.end() && it->first == key ? &it->second : nullptr;
}

Value* Map::find(const Value& key) {
  return const_cast<Value*>(std::as_const(*this).find(key));
}

void Map::insert_or_assign(Value key, Value value) {
  const auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                                   [](const Entry& e, const Value& k) { return e.first < k; });
  if (it != entries_.end() && it->first == key)
    it->second = std::move(value);
  else
    entries_.emplace(it, std::move(key), std::move(value));
}

bool Map::erase(const Value& key) {
  const auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                                   [](const Entry& e, const Value& k) { return e.first < k; });
  if (it == entries_.end() || it->first != key) return false;
  entries_.erase(it);
  return true;
}

std::optional<Map> Map::from_entries(std::vector<Entry> entries) {
  std::sort(entries.begin(), entries.end(), key_less);
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i - 1].first == entries[i].first) return std::nullopt;
  Map m;
  m.entries_ = std::move(entries);
  return m;
}

bool operator==(const Map& a, const Map& b) {
  return a.entries_ == b.entries_;
}

std::strong_ordering operator<=>(const Map& a, const Map& b) {
  // Shorter maps first, as Erlang orders maps by size before content.
  if (a.size() != b.size()) return a.size() <=> b.size();
  for (size_t i = 0; i < a.entries_.size(); ++i) {
    if (auto c = a.entries_[i].first <=> b.entries_[i].first; c != 0) return c;
    if (auto c = a.entries_[i].second <=> b.entries_[i].second; c != 0) return c;
  }
  return std::strong_ordering::equal;
}

std::optional<bool> Value::as_bool() const {
  if (const bool* b = std::get_if<bool>(&data_)) return *b;
  return std::nullopt;
}

std::optional<int64_t> Value::as_int() const {
  if (const int64_t* i = std::get_if<int64_t>(&data_)) return *i;
  return std::nullopt;
}

std::optional<double> Value::as_double() const {
  if (const double* d = std::get_if<double>(&data_)) return *d;
  return std::nullopt;
}

std::optional<std::string_view> Value::as_bytes() const {
  if (const std::string* s = as_string()) return std::string_view(*s);
  if (const Binary* b = as_binary()) return std::string_view(b->bytes);
  return std::nullopt;
}

std::string Value::to_string() const {
  std::string out;
  append_value(out, *this);
  return out;
}

bool operator==(const Value& a, const Value& b) {
  return (a <=> b) == 0;
}

std::strong_ordering operator<=>(const Value& a, const Value& b) {
  if (a.data_.index() != b.data_.index()) return a.data_.index() <=> b.data_.index();
  return std::visit(
      [&b](const auto& x) -> std::strong_ordering {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b.data_);
        if constexpr (std::is_same_v<T, std::monostate>) {
          return std::strong_ordering::equal;
        } else if constexpr (std::is_same_v<T, double>) {
          // IEEE totalOrder: a true total order, equal only for the same bits.
          return std::strong_order(x, y);
        } else if constexpr (std::is_same_v<T, List> || std::is_same_v<T, Tuple>) {
          // Tuples by size first, as Erlang does; lists lexicographically.
          if constexpr (std::is_same_v<T, Tuple>)
            if (x.size() != y.size()) return x.size() <=> y.size();
          const size_t n = std::min(x.size(), y.size());
          for (size_t i = 0; i < n; ++i)
            if (auto c = x[i] <=> y[i]; c != 0) return c;
          return x.size() <=> y.size();
        } else {
          return x <=> y;
        }
      },
      a.data_);
}

}  // namespace occasional
