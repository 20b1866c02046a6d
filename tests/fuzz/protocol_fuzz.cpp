// libFuzzer target: decode_message on arbitrary bytes, the one decoder both
// sides of the worker protocol use (a worker is any executable, so the
// coordinator reads whatever it sends).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "workers/protocol.hpp"

namespace {

using namespace occasional::workers;

bool same_header(const ConnHeader& a, const ConnHeader& b) {
  return a.id == b.id && a.peer == b.peer && a.local == b.local && a.listener == b.listener &&
         a.service == b.service && a.route == b.route && a.accepted_at_ns == b.accepted_at_ns;
}

bool same(const Message& a, const Message& b) {
  if (a.conns.size() != b.conns.size()) return false;
  for (size_t i = 0; i < a.conns.size(); ++i)
    if (!same_header(a.conns[i], b.conns[i])) return false;
  return a.type == b.type && a.version == b.version && a.pid == b.pid &&
         a.closed_counter == b.closed_counter && a.conn_batches == b.conn_batches &&
         same_header(a.conn, b.conn) && a.id == b.id && a.seq == b.seq &&
         a.deadline_ms == b.deadline_ms && a.text == b.text && a.is_error == b.is_error &&
         a.detail == b.detail;
}

// What our own encoders make of a decoded message.
std::string encode(const Message& m) {
  switch (m.type) {
    case MessageType::hello:
      return encode_hello_worker(m.pid, m.closed_counter, m.conn_batches);
    case MessageType::conn:
      return encode_conn(m.conn);
    case MessageType::conns: {
      std::string s;
      for (const ConnHeader& h : m.conns) append_conns_entry(s, h);
      finish_conns(s);
      return s;
    }
    case MessageType::drain:
      return encode_drain(m.deadline_ms);
    case MessageType::ping:
      return encode_ping(m.seq);
    case MessageType::closed_counter:
      return encode_closed_counter();
    case MessageType::ready:
      return encode_ready();
    case MessageType::closed:
      return encode_closed(m.id);
    case MessageType::exit:
      return m.is_error ? encode_exit_error(m.text, m.detail) : encode_exit_reason(m.text);
    case MessageType::pong:
      return encode_pong(m.seq);
    case MessageType::status:
      return encode_status(m.text);
  }
  std::abort();
}

bool known_reason(std::string_view r) {
  return r == "not_json" || r == "type_not_first" || r == "unknown_type" || r == "missing_field" ||
         r == "wrong_type" || r == "bad_version";
}

// Kept between inputs, as the worker keeps its Message between datagrams.
Message kept;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::string reason, error;
  const std::optional<Message> fresh = decode_message(bytes, reason, error);
  if (!fresh) {
    // A counted reason and a sentence for the log, always.
    if (!known_reason(reason) || error.empty()) std::abort();
  }
  // A kept Message decodes the same as a fresh one: nothing carries over.
  std::string kept_reason, kept_error;
  const bool kept_ok = decode_message(bytes, kept, kept_reason, kept_error);
  if (kept_ok != fresh.has_value()) std::abort();
  if (!fresh) {
    if (kept_reason != reason || kept_error != error) std::abort();
    return 0;
  }
  if (!same(kept, *fresh)) std::abort();
  // Whatever decodes, our encoders write back so that it decodes the same:
  // every string the decoder accepts survives append_json_string.
  const std::string again = encode(*fresh);
  const std::optional<Message> round = decode_message(again, reason, error);
  if (!round || !same(*round, *fresh)) std::abort();
  return 0;
}
