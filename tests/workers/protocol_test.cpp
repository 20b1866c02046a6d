#include "workers/protocol.hpp"

#include <gtest/gtest.h>

namespace occasional::workers {
namespace {

std::optional<Message> decode(const std::string& s, std::string* reason_out = nullptr) {
  std::string reason, error;
  auto m = decode_message(s, reason, error);
  if (reason_out) *reason_out = reason;
  return m;
}

TEST(ProtocolTest, ConnRoundTrips) {
  ConnHeader h{42, "127.0.0.1:5000", "127.0.0.1:8080", "main", "web", "http", 123456789};
  auto m = decode(encode_conn(h));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, MessageType::conn);
  EXPECT_EQ(m->conn.id, 42u);
  EXPECT_EQ(m->conn.peer, "127.0.0.1:5000");
  EXPECT_EQ(m->conn.local, "127.0.0.1:8080");
  EXPECT_EQ(m->conn.listener, "main");
  EXPECT_EQ(m->conn.service, "web");
  EXPECT_EQ(m->conn.route, "http");
  EXPECT_EQ(m->conn.accepted_at_ns, 123456789);
}

TEST(ProtocolTest, EveryMessageTypeRoundTrips) {
  EXPECT_EQ(decode(encode_hello_coordinator())->version, kProtocolVersion);
  EXPECT_EQ(decode(encode_hello_worker(77))->pid, 77);
  EXPECT_EQ(decode(encode_drain(5000))->deadline_ms, 5000);
  EXPECT_EQ(decode(encode_ping(9))->seq, 9u);
  EXPECT_EQ(decode(encode_pong(9))->type, MessageType::pong);
  EXPECT_EQ(decode(encode_ready())->type, MessageType::ready);
  EXPECT_EQ(decode(encode_closed(5))->id, 5u);
  auto reason = decode(encode_exit_reason("config \"x\" missing"));
  EXPECT_EQ(reason->text, "config \"x\" missing");
  EXPECT_FALSE(reason->is_error);
  auto error = decode(encode_exit_error("db_down", "connect: refused"));
  EXPECT_TRUE(error->is_error);
  EXPECT_EQ(error->text, "db_down");
  EXPECT_EQ(error->detail, "connect: refused");
  EXPECT_EQ(decode(encode_status("warming up"))->text, "warming up");
  EXPECT_EQ(decode(encode_closed_counter())->type, MessageType::closed_counter);
}

TEST(ProtocolTest, ConnsCarriesSeveralHeadersInOrder) {
  std::string message;
  for (uint64_t id = 1; id <= 3; ++id)
    workers::append_conns_entry(
        message, ConnHeader{id, "127.0.0.1:" + std::to_string(5000 + id), "127.0.0.1:8080", "main",
                            "web", "default", static_cast<int64_t>(100 * id)});
  workers::finish_conns(message);
  EXPECT_TRUE(message.starts_with(R"({"type":"conns","conns":[{"id":1,"peer":"127.0.0.1:5001")"))
      << message;
  auto m = decode(message);
  ASSERT_TRUE(m) << message;
  EXPECT_EQ(m->type, MessageType::conns);
  ASSERT_EQ(m->conns.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(m->conns[i].id, i + 1);
    EXPECT_EQ(m->conns[i].peer, "127.0.0.1:" + std::to_string(5001 + i));
    EXPECT_EQ(m->conns[i].service, "web");
    EXPECT_EQ(m->conns[i].accepted_at_ns, static_cast<int64_t>(100 * (i + 1)));
  }
  EXPECT_TRUE(decode(encode_hello_worker(1, false, true))->conn_batches);
  EXPECT_FALSE(decode(encode_hello_worker(1))->conn_batches);
}

TEST(ProtocolTest, AKeptBufferAndAKeptMessageCarryNothingOver) {
  // The coordinator encodes into one buffer and the worker decodes into one
  // Message for every handoff: what a longer message left must not leak
  // into the next.
  ConnHeader a{1, "127.0.0.1:5001", "127.0.0.1:8080", "main", "a-long-service-name", "http", 10};
  ConnHeader b{2, "10.0.0.2:6", "10.0.0.1:80", "edge", "web", "default", 20};
  std::string buffer;
  append_conns_entry(buffer, a);
  append_conns_entry(buffer, a);
  finish_conns(buffer);
  Message m;
  std::string reason, error;
  ASSERT_TRUE(decode_message(buffer, m, reason, error)) << error;
  EXPECT_EQ(m.conns.size(), 2u);
  encode_conn(buffer, b);
  EXPECT_EQ(buffer, encode_conn(b));
  ASSERT_TRUE(decode_message(buffer, m, reason, error)) << error;
  EXPECT_EQ(m.type, MessageType::conn);
  EXPECT_TRUE(m.conns.empty());
  EXPECT_EQ(m.conn.id, 2u);
  EXPECT_EQ(m.conn.service, "web");
  EXPECT_EQ(m.conn.peer, "10.0.0.2:6");
  ASSERT_TRUE(decode_message(encode_status("x"), m, reason, error)) << error;
  EXPECT_EQ(m.type, MessageType::status);
  EXPECT_EQ(m.conn.id, 0u);
  EXPECT_TRUE(m.conn.service.empty());
  EXPECT_EQ(m.text, "x");
  buffer.clear();
  append_conns_entry(buffer, b);
  finish_conns(buffer);
  ASSERT_TRUE(decode_message(buffer, m, reason, error)) << error;
  ASSERT_EQ(m.conns.size(), 1u);
  EXPECT_EQ(m.conns[0].listener, "edge");
  EXPECT_TRUE(m.text.empty());
  EXPECT_FALSE(decode_message("{}", m, reason, error));
  EXPECT_EQ(reason, "type_not_first");
}

TEST(ProtocolTest, BadConnsMessagesNameWhatIsWrong) {
  struct Case {
    std::string text;
    std::string error;
  };
  std::string seventeen = R"({"type":"conns","conns":[)";
  for (int i = 0; i < 17; ++i) seventeen += std::string(i ? "," : "") + "{}";
  seventeen += "]}";
  for (const Case& c : std::vector<Case>{
           {R"({"type":"conns"})", "conns: field \"conns\" is missing"},
           {R"({"type":"conns","conns":{}})", "conns: field \"conns\" must be an array"},
           {R"({"type":"conns","conns":[]})",
            "conns: field \"conns\" must hold 1 to 16 connections"},
           {seventeen, "conns: field \"conns\" must hold 1 to 16 connections"},
           {R"({"type":"conns","conns":[1]})", "conns: each of \"conns\" must be an object"},
           {R"({"type":"conns","conns":[{"id":1}]})", "conns: field \"peer\" is missing"},
       }) {
    std::string reason, error;
    EXPECT_FALSE(decode_message(c.text, reason, error)) << c.text;
    EXPECT_EQ(error, c.error) << c.text;
  }
}

TEST(ProtocolTest, AWorkerHelloMayAskForTheClosedCounter) {
  EXPECT_FALSE(decode(encode_hello_worker(77))->closed_counter);
  auto asks = decode(encode_hello_worker(77, true));
  ASSERT_TRUE(asks);
  EXPECT_TRUE(asks->closed_counter);
  EXPECT_EQ(asks->pid, 77);
  EXPECT_FALSE(decode(R"({"type":"hello","version":1,"closed_counter":false})")->closed_counter);
  std::string reason, error;
  EXPECT_FALSE(decode_message(R"({"type":"hello","version":1,"closed_counter":1})", reason, error));
  EXPECT_EQ(reason, "wrong_type");
  EXPECT_EQ(error, "hello: field \"closed_counter\" must be true or false");
}

TEST(ProtocolTest, EncodedMessagesStartWithType) {
  EXPECT_EQ(encode_ready(), R"({"type":"ready"})");
  EXPECT_EQ(encode_closed(3), R"({"type":"closed","id":3})");
}

TEST(ProtocolTest, BadMessagesAreRejectedWithAReason) {
  struct Case {
    std::string text;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {"not json", "not_json"},
           {"[1,2]", "not_json"},
           {R"({"id":1,"type":"closed"})", "type_not_first"},
           {R"({"type":7})", "wrong_type"},
           {R"({"type":"launch"})", "unknown_type"},
           {R"({"type":"closed"})", "missing_field"},
           {R"({"type":"closed","id":"x"})", "wrong_type"},
           {R"({"type":"hello","version":2})", "bad_version"},
           // 2^32 + 1: read into a 32-bit int it would be version 1.
           {R"({"type":"hello","version":4294967297})", "bad_version"},
           {R"({"type":"conn","id":1})", "missing_field"},
           {R"({"type":"exit"})", "missing_field"},
       }) {
    std::string reason;
    EXPECT_FALSE(decode(c.text, &reason)) << c.text;
    EXPECT_EQ(reason, c.reason) << c.text;
  }
}

TEST(ProtocolTest, ErrorSentenceNamesTheField) {
  std::string reason, error;
  decode_message(R"({"type":"closed","id":-1})", reason, error);
  EXPECT_EQ(error, "closed: field \"id\" must be an unsigned integer");
}

}  // namespace
}  // namespace occasional::workers
