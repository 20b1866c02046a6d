#include "workers/process_control.hpp"

#include <stdexcept>

#include "workers/etf.hpp"

namespace occasional::process_control {

std::string encode(const Value& term) {
  std::string out;
  etf::Error error;
  if (!etf::encode(term, out, error))
    throw std::invalid_argument("control message cannot be encoded: " + error.message());
  return out;
}

std::optional<Message> decode(std::string_view payload, std::string& error) {
  etf::Error etf_error;
  std::optional<Value> term = etf::decode(payload, etf_error);
  if (!term) {
    error = etf_error.message();
    return std::nullopt;
  }
  const Tuple* t = term->as_tuple();
  if (!t || t->empty() || !(*t)[0].as_string()) {
    error = "not a tuple starting with a name: " + term->to_string();
    return std::nullopt;
  }
  return Message{std::move(*term)};
}

Map reason_normal(Value value) {
  return Map{{"kind", "normal"}, {"value", std::move(value)}};
}

Map reason_error(std::string type, std::string what) {
  return Map{{"kind", "error"}, {"type", std::move(type)}, {"what", std::move(what)}};
}

Map reason_protocol_error(std::string error) {
  return Map{{"kind", "protocol_error"}, {"error", std::move(error)}};
}

Map reason_noproc() {
  return Map{{"kind", "noproc"}};
}

std::string_view reason_kind(const Map& reason) {
  const Value* kind = reason.find("kind");
  if (!kind || !kind->as_string()) return {};
  return *kind->as_string();
}

std::string_view reason_kind(const Value& reason) {
  const Map* m = reason.as_map();
  return m ? reason_kind(*m) : std::string_view();
}

}  // namespace occasional::process_control
