#include "workers/protocol.hpp"

#include <simdjson.h>
#include <time.h>

#include "workers/json.hpp"

namespace occasional::workers {

const char* message_type_name(MessageType type) {
  switch (type) {
    case MessageType::hello:
      return "hello";
    case MessageType::conn:
      return "conn";
    case MessageType::conns:
      return "conns";
    case MessageType::drain:
      return "drain";
    case MessageType::ping:
      return "ping";
    case MessageType::closed_counter:
      return "closed_counter";
    case MessageType::ready:
      return "ready";
    case MessageType::closed:
      return "closed";
    case MessageType::exit:
      return "exit";
    case MessageType::pong:
      return "pong";
    case MessageType::status:
      return "status";
  }
  return "?";
}

int64_t monotonic_now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

namespace {

void start(std::string& s, const char* type) {
  s += "{\"type\":\"";
  s += type;
  s += '"';
}

std::string start(const char* type) {
  std::string s;
  s.reserve(64);
  start(s, type);
  return s;
}

void field(std::string& s, const char* key, std::string_view value) {
  s += ",\"";
  s += key;
  s += "\":";
  append_json_string(s, value);
}

void field(std::string& s, const char* key, int64_t value) {
  s += ",\"";
  s += key;
  s += "\":";
  s += std::to_string(value);
}

void field(std::string& s, const char* key, uint64_t value) {
  s += ",\"";
  s += key;
  s += "\":";
  s += std::to_string(value);
}

std::string finish(std::string s) {
  s += '}';
  return s;
}

}  // namespace

std::string encode_hello_coordinator() {
  auto s = start("hello");
  field(s, "version", int64_t{kProtocolVersion});
  field(s, "role", "coordinator");
  return finish(std::move(s));
}

std::string encode_hello_worker(int64_t pid, bool closed_counter, bool conn_batches) {
  auto s = start("hello");
  field(s, "version", int64_t{kProtocolVersion});
  field(s, "role", "worker");
  field(s, "pid", pid);
  if (closed_counter) s += ",\"closed_counter\":true";
  if (conn_batches) s += ",\"conn_batches\":true";
  return finish(std::move(s));
}

namespace {

// The fields of a conn header, each as ,"key":value.
void conn_fields(std::string& s, const ConnHeader& h) {
  field(s, "id", h.id);
  field(s, "peer", h.peer);
  field(s, "local", h.local);
  field(s, "listener", h.listener);
  field(s, "service", h.service);
  field(s, "route", h.route);
  field(s, "accepted_at_ns", h.accepted_at_ns);
}

}  // namespace

std::string encode_conn(const ConnHeader& h) {
  std::string s;
  encode_conn(s, h);
  return s;
}

void encode_conn(std::string& out, const ConnHeader& h) {
  out.clear();
  start(out, "conn");
  conn_fields(out, h);
  out += '}';
}

void append_conns_entry(std::string& message, const ConnHeader& h) {
  if (message.empty()) {
    start(message, "conns");
    message += ",\"conns\":[";
  } else {
    message += ',';
  }
  const size_t at = message.size();
  conn_fields(message, h);
  message[at] = '{';  // the comma conn_fields puts before the first field
  message += '}';
}

void finish_conns(std::string& message) {
  message += "]}";
}

std::string encode_drain(int64_t deadline_ms) {
  auto s = start("drain");
  field(s, "deadline_ms", deadline_ms);
  return finish(std::move(s));
}

std::string encode_ping(uint64_t seq) {
  auto s = start("ping");
  field(s, "seq", seq);
  return finish(std::move(s));
}

std::string encode_closed_counter() {
  return finish(start("closed_counter"));
}

std::string encode_pong(uint64_t seq) {
  auto s = start("pong");
  field(s, "seq", seq);
  return finish(std::move(s));
}

std::string encode_ready() {
  return finish(start("ready"));
}

std::string encode_closed(uint64_t id) {
  auto s = start("closed");
  field(s, "id", id);
  return finish(std::move(s));
}

std::string encode_exit_reason(std::string_view reason) {
  auto s = start("exit");
  field(s, "reason", reason);
  return finish(std::move(s));
}

std::string encode_exit_error(std::string_view error, std::string_view detail) {
  auto s = start("exit");
  field(s, "error", error);
  field(s, "detail", detail);
  return finish(std::move(s));
}

std::string encode_status(std::string_view text) {
  auto s = start("status");
  field(s, "text", text);
  return finish(std::move(s));
}

namespace {

struct Decoder {
  simdjson::dom::object obj;
  std::string& reason;
  std::string& error;

  bool fail(const char* why, std::string message) {
    reason = why;
    error = std::move(message);
    return false;
  }

  bool string(const char* key, std::string& out, bool required = true) {
    simdjson::dom::element e;
    if (obj[key].get(e) != simdjson::SUCCESS)
      return required ? fail("missing_field", std::string("field \"") + key + "\" is missing")
                      : true;
    std::string_view sv;
    if (e.get(sv) != simdjson::SUCCESS)
      return fail("wrong_type", std::string("field \"") + key + "\" must be a string");
    out.assign(sv);
    return true;
  }

  template <class Int>
  bool integer(const char* key, Int& out, bool required = true) {
    // Read as 64 bits and kept as 64 bits: a narrower field would take
    // 2^32 + 1 for 1.
    static_assert(sizeof(Int) == sizeof(int64_t));
    simdjson::dom::element e;
    if (obj[key].get(e) != simdjson::SUCCESS)
      return required ? fail("missing_field", std::string("field \"") + key + "\" is missing")
                      : true;
    if constexpr (std::is_unsigned_v<Int>) {
      uint64_t v;
      if (e.get(v) != simdjson::SUCCESS)
        return fail("wrong_type", std::string("field \"") + key + "\" must be an unsigned integer");
      out = static_cast<Int>(v);
    } else {
      int64_t v;
      if (e.get(v) != simdjson::SUCCESS)
        return fail("wrong_type", std::string("field \"") + key + "\" must be an integer");
      out = static_cast<Int>(v);
    }
    return true;
  }

  bool conn(ConnHeader& h) {
    return integer("id", h.id) && string("peer", h.peer) && string("local", h.local) &&
           string("listener", h.listener) && string("service", h.service) &&
           string("route", h.route) && integer("accepted_at_ns", h.accepted_at_ns);
  }

  bool boolean(const char* key, bool& out) {
    simdjson::dom::element e;
    if (obj[key].get(e) != simdjson::SUCCESS) return true;  // optional
    if (e.get(out) != simdjson::SUCCESS)
      return fail("wrong_type", std::string("field \"") + key + "\" must be true or false");
    return true;
  }
};

}  // namespace

std::optional<Message> decode_message(std::string_view datagram, std::string& reason,
                                      std::string& error) {
  Message m;
  if (!decode_message(datagram, m, reason, error)) return std::nullopt;
  return m;
}

bool decode_message(std::string_view datagram, Message& m, std::string& reason,
                    std::string& error) {
  // Every field back to empty; `conns` keeps its capacity.
  std::vector<ConnHeader> conns = std::move(m.conns);
  conns.clear();
  m = Message{};
  m.conns = std::move(conns);
  // One parser per thread: decoding allocates nothing once it has grown.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(datagram.data(), datagram.size()).get(doc) != simdjson::SUCCESS) {
    reason = "not_json";
    error = "the message is not valid JSON";
    return false;
  }
  Decoder d{{}, reason, error};
  if (doc.get(d.obj) != simdjson::SUCCESS) {
    d.fail("not_json", "the message is not a JSON object");
    return false;
  }
  auto first = d.obj.begin();
  if (first == d.obj.end() || first.key() != "type") {
    d.fail("type_not_first", "the first field must be \"type\"");
    return false;
  }
  std::string_view type;
  if (first.value().get(type) != simdjson::SUCCESS) {
    d.fail("wrong_type", "field \"type\" must be a string");
    return false;
  }
  bool ok = true;
  if (type == "hello") {
    m.type = MessageType::hello;
    ok = d.integer("version", m.version) && d.integer("pid", m.pid, false) &&
         d.boolean("closed_counter", m.closed_counter) && d.boolean("conn_batches", m.conn_batches);
    if (ok && m.version != kProtocolVersion)
      ok = d.fail("bad_version", "protocol version " + std::to_string(m.version) +
                                     " is not supported (this side speaks " +
                                     std::to_string(kProtocolVersion) + ")");
  } else if (type == "conn") {
    m.type = MessageType::conn;
    ok = d.conn(m.conn);
  } else if (type == "conns") {
    m.type = MessageType::conns;
    simdjson::dom::array list;
    simdjson::dom::element e;
    if (d.obj["conns"].get(e) != simdjson::SUCCESS) {
      ok = d.fail("missing_field", "field \"conns\" is missing");
    } else if (e.get(list) != simdjson::SUCCESS) {
      ok = d.fail("wrong_type", "field \"conns\" must be an array");
    } else if (list.size() < 1 || list.size() > kMaxConnsPerMessage) {
      ok = d.fail("wrong_type", "field \"conns\" must hold 1 to " +
                                    std::to_string(kMaxConnsPerMessage) + " connections");
    } else {
      m.conns.reserve(list.size());
      for (simdjson::dom::element item : list) {
        Decoder entry{{}, reason, error};
        if (item.get(entry.obj) != simdjson::SUCCESS) {
          ok = d.fail("wrong_type", "each of \"conns\" must be an object");
          break;
        }
        if (!(ok = entry.conn(m.conns.emplace_back()))) break;
      }
    }
  } else if (type == "drain") {
    m.type = MessageType::drain;
    ok = d.integer("deadline_ms", m.deadline_ms, false);
  } else if (type == "ping" || type == "pong") {
    m.type = type == "ping" ? MessageType::ping : MessageType::pong;
    ok = d.integer("seq", m.seq, false);
  } else if (type == "closed_counter") {
    m.type = MessageType::closed_counter;
  } else if (type == "ready") {
    m.type = MessageType::ready;
  } else if (type == "closed") {
    m.type = MessageType::closed;
    ok = d.integer("id", m.id);
  } else if (type == "exit") {
    m.type = MessageType::exit;
    simdjson::dom::element e;
    if (d.obj["error"].get(e) == simdjson::SUCCESS) {
      m.is_error = true;
      ok = d.string("error", m.text) && d.string("detail", m.detail, false);
    } else {
      ok = d.string("reason", m.text);
    }
  } else if (type == "status") {
    m.type = MessageType::status;
    ok = d.string("text", m.text);
  } else {
    d.fail("unknown_type", "unknown message type \"" + std::string(type) + "\"");
    return false;
  }
  if (!ok) {
    error = std::string(type) + ": " + error;
    return false;
  }
  return true;
}

}  // namespace occasional::workers
