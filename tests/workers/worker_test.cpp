// The C++ worker library in handoff mode, with the test as its coordinator
// on the other end of a real SOCK_SEQPACKET pair and real TCP connections.
#include "workers/worker.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "workers/control_channel.hpp"

namespace occasional::workers {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

// A loopback listener and `n` connected client/server socket pairs.
struct TcpPairs {
  std::vector<UniqueFd> clients, servers;
  explicit TcpPairs(int n) {
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener.get(), 16), 0);
    EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    for (int i = 0; i < n; ++i) {
      clients.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      EXPECT_EQ(::connect(clients.back().get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
      servers.emplace_back(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }
  }
};

// The worker end of the control socket becomes OCCASIONAL_CONTROL_FD.
struct WorkerTest : ::testing::Test {
  asio::io_context io;
  UniqueFd coordinator_end;
  std::unique_ptr<Worker> worker;

  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    coordinator_end = UniqueFd(sv[0]);
    ::setenv(kControlFdEnv, std::to_string(sv[1]).c_str(), 1);
    worker = std::make_unique<Worker>(io);
    ::unsetenv(kControlFdEnv);
  }

  // The next message the worker sent, decoded (fails the test on none).
  Message from_worker() {
    Received r = receive_datagram(coordinator_end.get());
    EXPECT_EQ(r.status, ReceiveStatus::message);
    std::string reason, error;
    auto m = decode_message(r.payload, reason, error);
    EXPECT_TRUE(m) << error;
    return m ? *m : Message{};
  }

  void send_conns(const std::vector<ConnHeader>& headers, const std::vector<int>& fds) {
    std::string message;
    for (const ConnHeader& h : headers) append_conns_entry(message, h);
    finish_conns(message);
    ASSERT_FALSE(send_datagram(coordinator_end.get(), message, std::span<const int>(fds)));
  }
};

ConnHeader header(uint64_t id) {
  return ConnHeader{id, "127.0.0.1:1", "127.0.0.1:2", "main", "web", "default", 0};
}

TEST_F(WorkerTest, HelloAsksForTheClosedCounterAndForBatches) {
  Message hello = from_worker();
  EXPECT_EQ(hello.type, MessageType::hello);
  EXPECT_EQ(hello.pid, ::getpid());
  EXPECT_TRUE(hello.closed_counter);
  EXPECT_TRUE(hello.conn_batches);
}

TEST_F(WorkerTest, AConnsMessageBecomesItsConnectionsInOrderBeforeAnyLaterMessage) {
  TcpPairs tcp(3);
  send_conns({header(7), header(8), header(9)},
             {tcp.servers[0].get(), tcp.servers[1].get(), tcp.servers[2].get()});
  for (auto& s : tcp.servers) s.reset();  // the worker holds its own copies
  ASSERT_FALSE(send_datagram(coordinator_end.get(), encode_drain(1000)));

  std::vector<uint64_t> ids;
  bool ended = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (auto c = co_await worker->next()) {
          ids.push_back(c->header.id);
          // Say which connection this is through the socket itself.
          const std::string text = std::to_string(c->header.id);
          co_await asio::async_write(c->socket, asio::buffer(text), asio::use_awaitable);
          c->socket.close();
          worker->closed(c->header.id);
        }
        ended = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  io.run_for(5s);
  EXPECT_TRUE(ended) << "the drain after the batch did not end next()";
  EXPECT_EQ(ids, (std::vector<uint64_t>{7, 8, 9}));
  for (int i = 0; i < 3; ++i) {
    char buf[8] = {};
    ASSERT_EQ(::recv(tcp.clients[i].get(), buf, sizeof buf, 0), 1) << i;
    EXPECT_EQ(buf[0], static_cast<char>('7' + i)) << "connection " << i << " got another's fd";
  }
}

TEST_F(WorkerTest, AConnsMessageWithTooFewFdsIsAProtocolErrorTheWorkerReports) {
  from_worker();  // hello
  TcpPairs tcp(1);
  send_conns({header(1), header(2)}, {tcp.servers[0].get()});
  std::string failure;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { co_await worker->next(); },
      [&](std::exception_ptr e) {
        try {
          if (e) std::rethrow_exception(e);
        } catch (const std::runtime_error& err) {
          failure = err.what();
        }
      });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (failure.empty() && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
  EXPECT_EQ(failure, "conns message with 1 fds for 2 connections");
  Message exit = from_worker();
  EXPECT_EQ(exit.type, MessageType::exit);
  EXPECT_TRUE(exit.is_error);
  EXPECT_EQ(exit.text, "protocol_error");
  EXPECT_EQ(exit.detail, "conns message with 1 fds for 2 connections");
}

}  // namespace
}  // namespace occasional::workers
