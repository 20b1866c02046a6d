// Issue 22 part 2: TCP sockets whose data arrives in the inbox (gen_tcp),
// handed between processes with controlling_process. The peers are real
// sockets written with plain system calls in other processes.
#include "workers/tcp.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/process/process_testing.hpp"
#include "workers/control_channel.hpp"
#include "workers/process.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::expect_message;
using testing::kind;
using testing::kWait;
using testing::run_system;
using testing::wait_down;

// Byte i of a test stream: a shift by any number of bytes (a loss or a
// duplicate) changes it within a few bytes.
char pattern(uint64_t i) {
  return static_cast<char>((i ^ (i >> 8) ^ (i >> 16)) * 31 + (i >> 11));
}

std::string stream_part(uint64_t from, size_t size) {
  std::string out(size, '\0');
  for (size_t k = 0; k < size; ++k) out[k] = pattern(from + k);
  return out;
}

UniqueFd raw_connect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  return fd;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// A peer process: connects to `port`, writes `total` bytes of the pattern
// in pieces of `piece`, then closes.
void stream_writer(Process&, uint16_t port, uint64_t total, size_t piece) {
  UniqueFd fd = raw_connect(port);
  ASSERT_TRUE(fd);
  for (uint64_t at = 0; at < total; at += piece)
    ASSERT_TRUE(write_all(fd.get(), stream_part(at, std::min<uint64_t>(piece, total - at))));
}

tcp::Socket listen_local(Process& p, tcp::Options accepted = {}) {
  tcp::ListenOptions options;
  options.host = "127.0.0.1";
  options.accepted = accepted;
  return tcp::listen(p, 0, options);
}

// A connection from a spawned stream_writer, owned by the caller.
tcp::Socket accept_writer(Process& p, uint64_t total, size_t piece, tcp::Active active) {
  tcp::Socket listener = listen_local(p, {active, false});
  p.spawn(stream_writer, tcp::port(p, listener), total, piece);
  std::optional<tcp::Socket> s = tcp::accept(p, listener, kWait);
  tcp::close(p, listener);
  if (!s) throw std::runtime_error("no connection from the writer");
  return *s;
}

int count_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory's own
}

TEST(Tcp, ActiveOnceDeliversOneMessageAndThenWaitsToBeAskedAgain) {
  run_system([](Process& p) {
    const uint64_t total = 300 * 1024;
    tcp::Socket s = accept_writer(p, total, 4096, tcp::Active::once);
    std::string got;
    bool closed = false;
    int messages = 0;
    while (!closed) {
      std::optional<Value> m = p.receive(tcp::messages_of(s), kWait);
      ASSERT_TRUE(m);
      std::optional<tcp::Event> e = tcp::event(*m);
      ASSERT_TRUE(e);
      EXPECT_EQ(e->socket, s);
      if (e->kind == tcp::Event::Kind::closed) {
        closed = true;
        break;
      }
      ASSERT_EQ(e->kind, tcp::Event::Kind::data);
      got += e->bytes;
      ++messages;
      // Once means once: no second message until asked. (The writer is
      // still writing or has closed: either would show as a message.)
      if (messages == 1) {
        EXPECT_FALSE(p.receive(tcp::messages_of(s), 100ms));
      }
      ASSERT_TRUE(tcp::set_active(p, s, tcp::Active::once));
    }
    EXPECT_EQ(got.size(), total);
    EXPECT_TRUE(got == stream_part(0, total));
    EXPECT_GT(messages, 1);
    tcp::close(p, s);
  });
}

TEST(Tcp, ActiveOnDeliversEverythingThenClosed) {
  run_system([](Process& p) {
    const uint64_t total = 1 << 20;
    tcp::Socket s = accept_writer(p, total, 10'000, tcp::Active::on);
    std::string got;
    for (;;) {
      std::optional<Value> m = p.receive(kWait);
      ASSERT_TRUE(m);
      std::optional<tcp::Event> e = tcp::event(*m);
      ASSERT_TRUE(e);
      if (e->kind == tcp::Event::Kind::closed) break;
      ASSERT_EQ(e->kind, tcp::Event::Kind::data);
      EXPECT_LE(e->bytes.size(), 64u * 1024);
      got += e->bytes;
    }
    EXPECT_TRUE(got == stream_part(0, total));
    // Nothing after tcp_closed.
    EXPECT_FALSE(p.receive(50ms));
  });
}

TEST(Tcp, SocketMessagesMultiplexWithOtherMessagesAndSelectiveReceive) {
  run_system([](Process& p) {
    tcp::Socket listener = listen_local(p, {tcp::Active::on, true});
    const uint16_t port = tcp::port(p, listener);
    const Address zero = p.self();
    // A peer that writes a line, then sends a message, then writes again.
    p.spawn([port, zero](Process& c) {
      UniqueFd fd = raw_connect(port);
      ASSERT_TRUE(fd);
      ASSERT_TRUE(write_all(fd.get(), "first"));
      c.send(zero, "between");
      c.receive();  // keeps the connection open until the system ends
    });
    tcp::Socket s = tcp::accept(p, listener);
    // The message comes in the same inbox; a selective receive takes it
    // whatever socket data came first.
    expect_message(p, "between");
    std::optional<Value> first = p.receive(tcp::messages_of(s), kWait);
    ASSERT_TRUE(first);
    EXPECT_EQ(*first, tuple("tcp", s, binary("first")));
    // Nothing more for this socket, with a timeout.
    EXPECT_FALSE(p.receive(tcp::messages_of(s), 50ms));
  });
}

TEST(Tcp, PassiveRecvExactLengthAnyLengthTimeoutAndClosed) {
  run_system([](Process& p) {
    tcp::Socket listener = listen_local(p);
    const uint16_t port = tcp::port(p, listener);
    const Address zero = p.self();
    Address peer = p.spawn([port, zero](Process& c) {
      UniqueFd fd = raw_connect(port);
      ASSERT_TRUE(fd);
      ASSERT_TRUE(write_all(fd.get(), "abcdef"));
      c.send(zero, "written");
      c.receive();
      ASSERT_TRUE(write_all(fd.get(), "ghij"));
    });
    tcp::Socket s = tcp::accept(p, listener);
    expect_message(p, "written");
    tcp::Result r = tcp::recv(p, s, 4, kWait);
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ(r.bytes, "abcd");
    // 10 bytes asked, 2 there: a timeout keeps them for the next call.
    r = tcp::recv(p, s, 10, 100ms);
    EXPECT_EQ(r.error, "timeout");
    // The bytes a passive recv kept come first in active mode, which
    // refuses recv.
    ASSERT_TRUE(tcp::set_active(p, s, tcp::Active::on));
    EXPECT_EQ(tcp::recv(p, s, 0, 0ms).error, "einval");
    ASSERT_TRUE(tcp::set_active(p, s, tcp::Active::off));
    std::optional<Value> m = p.receive(tcp::messages_of(s), kWait);
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, tuple("tcp", s, binary("ef")));
    p.send(peer, "go");
    r = tcp::recv(p, s, 4, kWait);
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ(r.bytes, "ghij");
    EXPECT_EQ(tcp::recv(p, s, 0, kWait).error, "closed");
  });
}

TEST(Tcp, ConnectSendAndErrors) {
  run_system([](Process& p) {
    tcp::Socket listener = listen_local(p, {tcp::Active::on, false});
    const uint16_t port = tcp::port(p, listener);
    // An echo peer made of this library: connect, echo what arrives.
    p.spawn([port](Process& c) {
      tcp::Socket s = tcp::connect(c, "localhost", port, {tcp::Active::on, true});
      for (;;) {
        const Value m = c.receive();
        std::optional<tcp::Event> e = tcp::event(m);
        ASSERT_TRUE(e);
        if (e->kind != tcp::Event::Kind::data) return;
        ASSERT_TRUE(tcp::send(c, s, e->bytes));
      }
    });
    tcp::Socket s = tcp::accept(p, listener);
    ASSERT_TRUE(tcp::send(p, s, "ping"));
    std::string echoed;
    while (echoed.size() < 4) {
      std::optional<Value> m = p.receive(tcp::messages_of(s), kWait);
      ASSERT_TRUE(m);
      echoed += tcp::event(*m)->bytes;
    }
    EXPECT_EQ(echoed, "ping");
    // Someone else's socket, a closed port.
    EXPECT_EQ(tcp::send(p, tcp::Socket{}, "x").error, "not_owner");
    tcp::Socket gone = listen_local(p);
    const uint16_t free_port = tcp::port(p, gone);
    tcp::close(p, gone);
    try {
      tcp::connect(p, "127.0.0.1", free_port);
      ADD_FAILURE() << "connected to a closed port";
    } catch (const tcp::Error& e) {
      EXPECT_EQ(e.reason(), "econnrefused") << e.what();
    }
    EXPECT_FALSE(tcp::accept(p, listener, 10ms));
    // To a process that has exited: refused, and the socket stays ours.
    auto [dead, dead_monitor] = p.spawn_monitor([](Process&) {});
    ASSERT_EQ(kind(wait_down(p, dead_monitor)), "normal");
    EXPECT_EQ(tcp::controlling_process(p, s, dead).error, "noproc");
    ASSERT_TRUE(tcp::send(p, s, "pong"));
    echoed.clear();
    while (echoed.size() < 4) {
      std::optional<Value> m = p.receive(tcp::messages_of(s), kWait);
      ASSERT_TRUE(m);
      echoed += tcp::event(*m)->bytes;
    }
    EXPECT_EQ(echoed, "pong");
    tcp::close(p, s);
  });
}

// The receiving side of a hand-over: verifies the stream from `offset` on,
// taking the socket when `("take", socket, offset)` arrives, until EOF or
// until it has read up to `until`, then hands it to `next` (if any) and
// tells it where the stream is; reports the offset it reached to `report`.
void verify_stream(Process& p, Address report) {
  for (;;) {
    // The socket's moved messages came first: they wait for this one.
    Value m = p.receive([](const Value& v) {
      const Tuple* t = v.as_tuple();
      return t && t->size() == 5 && (*t)[0] == Value("take");
    });
    const Tuple* t = m.as_tuple();
    tcp::Socket s = *tcp::Socket::from((*t)[1]);
    uint64_t at = static_cast<uint64_t>(*(*t)[2].as_int());
    const uint64_t until = static_cast<uint64_t>(*(*t)[3].as_int());
    const Address next = *(*t)[4].as_address();
    // What mode it came in depends on the sender's: once, from here on.
    ASSERT_TRUE(tcp::set_active(p, s, tcp::Active::once));
    for (;;) {
      // Read some into the inbox without receiving it, so that the
      // hand-over has messages to move.
      if (at >= until) {
        p.receive([](const Value&) { return false; }, 0ms);
        ASSERT_TRUE(tcp::controlling_process(p, s, next));
        p.send(next, tuple("take", s, static_cast<int64_t>(at),
                           static_cast<int64_t>(at + 64 * 1024), p.self()));
        break;
      }
      std::optional<Value> got = p.receive(tcp::messages_of(s), kWait);
      ASSERT_TRUE(got);
      std::optional<tcp::Event> e = tcp::event(*got);
      ASSERT_TRUE(e);
      if (e->kind == tcp::Event::Kind::closed) {
        p.send(report, tuple("reached", static_cast<int64_t>(at)));
        tcp::close(p, s);
        return;
      }
      ASSERT_EQ(e->kind, tcp::Event::Kind::data);
      for (size_t k = 0; k < e->bytes.size(); ++k)
        ASSERT_EQ(e->bytes[k], pattern(at + k)) << "byte " << at + k;
      at += e->bytes.size();
      if (!tcp::set_active(p, s, tcp::Active::once)) FAIL();
    }
  }
}

TEST(Tcp, ControllingProcessMidStreamLosesAndDuplicatesNothing) {
  run_system([](Process& p) {
    const uint64_t total = 1 << 20;
    p.receive(0ms);  // makes the epoll set, which stays
    const int fds_before = count_fds();
    tcp::Socket s = accept_writer(p, total, 3000, tcp::Active::on);
    auto [b, b_monitor] = p.spawn_monitor(verify_stream, p.self());
    // Process zero reads the first part itself with active on (several
    // messages pile up unreceived), then hands over mid-way.
    uint64_t at = 0;
    while (at < total / 2) {
      std::optional<Value> m = p.receive(tcp::messages_of(s), kWait);
      ASSERT_TRUE(m);
      std::optional<tcp::Event> e = tcp::event(*m);
      ASSERT_TRUE(e);
      ASSERT_EQ(e->kind, tcp::Event::Kind::data);
      for (size_t k = 0; k < e->bytes.size(); ++k)
        ASSERT_EQ(e->bytes[k], pattern(at + k)) << "byte " << at + k;
      at += e->bytes.size();
    }
    p.receive([](const Value&) { return false; }, 0ms);
    ASSERT_TRUE(tcp::controlling_process(p, s, b));
    // Not ours any more.
    EXPECT_EQ(tcp::send(p, s, "x").error, "not_owner");
    EXPECT_EQ(tcp::controlling_process(p, s, b).error, "not_owner");
    p.send(b,
           tuple("take", s, static_cast<int64_t>(at), static_cast<int64_t>(total * 2), p.self()));
    expect_message(p, tuple("reached", static_cast<int64_t>(total)));
    // Its channel closes with b; the socket went with it.
    EXPECT_EQ(kind(wait_down(p, b_monitor)), "normal");
    EXPECT_EQ(count_fds(), fds_before);
  });
}

TEST(Tcp, ASocketPassedBackAndForthManyTimesKeepsTheStreamWhole) {
  run_system([](Process& p) {
    const uint64_t total = 1 << 20;
    tcp::Socket s = accept_writer(p, total, 7000, tcp::Active::once);
    // Two verifiers hand the socket to each other every ~64 KiB.
    Address a = p.spawn(verify_stream, p.self());
    Address b = p.spawn(verify_stream, p.self());
    ASSERT_TRUE(tcp::controlling_process(p, s, a));
    p.send(a, tuple("take", s, 0, 64 * 1024, b));
    // Each names itself as the next owner of the one it hands to: the
    // socket goes a -> b -> a -> b ... until EOF.
    expect_message(p, tuple("reached", static_cast<int64_t>(total)));
  });
}

TEST(Tcp, PassiveBytesAndModeMoveWithTheSocket) {
  run_system([](Process& p) {
    tcp::Socket listener = listen_local(p);
    const uint16_t port = tcp::port(p, listener);
    Address writer = p.spawn([port](Process& c) {
      UniqueFd fd = raw_connect(port);
      ASSERT_TRUE(fd);
      ASSERT_TRUE(write_all(fd.get(), stream_part(0, 10)));
      c.receive();
      ASSERT_TRUE(write_all(fd.get(), stream_part(10, 10)));
      c.receive();
    });
    tcp::Socket s = tcp::accept(p, listener);
    // 15 asked, 10 written: a timeout keeps what came (all 10, unless the
    // machine is slow) for later; active mode delivers it first.
    ASSERT_EQ(tcp::recv(p, s, 15, 300ms).error, "timeout");
    ASSERT_TRUE(tcp::set_active(p, s, tcp::Active::on));
    std::string first;
    while (first.size() < 10) {
      std::optional<Value> m = p.receive(tcp::messages_of(s), kWait);
      ASSERT_TRUE(m);
      first += tcp::event(*m)->bytes;
    }
    EXPECT_TRUE(first == stream_part(0, 10));
    ASSERT_TRUE(tcp::set_active(p, s, tcp::Active::off));
    // The same, handed to another process between the two.
    p.send(writer, "go");
    const Address zero = p.self();
    Address b = p.spawn([zero](Process& c) {
      Value m = c.receive();
      tcp::Socket s = *tcp::Socket::from(m);
      tcp::Result r = tcp::recv(c, s, 10, kWait);
      ASSERT_TRUE(r) << r.error;
      c.send(zero, binary(r.bytes));
      EXPECT_EQ(tcp::recv(c, s, 0, kWait).error, "closed");
    });
    ASSERT_EQ(tcp::recv(p, s, 15, 300ms).error, "timeout");
    ASSERT_TRUE(tcp::controlling_process(p, s, b));
    p.send(b, s);
    expect_message(p, binary(stream_part(10, 10)));
    p.send(writer, "done");
  });
}

TEST(Tcp, ListenAcceptAndHandEachConnectionToItsOwnProcess) {
  run_system([](Process& p) {
    p.receive(0ms);  // makes the epoll set, which stays
    const int fds_before = count_fds();
    std::vector<Reference> monitors;
    tcp::Socket listener = listen_local(p, {tcp::Active::once, true});
    const uint16_t port = tcp::port(p, listener);
    const Address zero = p.self();
    for (int i = 0; i < 20; ++i) {
      monitors.push_back(p.spawn_monitor([port, zero, i](Process& c) {
                            UniqueFd fd = raw_connect(port);
                            ASSERT_TRUE(fd);
                            const std::string line = "client " + std::to_string(i);
                            ASSERT_TRUE(write_all(fd.get(), line));
                            std::string back(line.size(), '\0');
                            ASSERT_EQ(::recv(fd.get(), back.data(), back.size(), MSG_WAITALL),
                                      static_cast<ssize_t>(line.size()));
                            c.send(zero, tuple("echoed", binary(back)));
                          }).second);
      tcp::Socket s = tcp::accept(p, listener);
      auto [server, server_monitor] = p.spawn_monitor([](Process& c) {
        const Value taken =
            c.receive([](const Value& v) { return tcp::Socket::from(v).has_value(); });
        tcp::Socket s = *tcp::Socket::from(taken);
        for (;;) {
          const Value m = c.receive(tcp::messages_of(s));
          std::optional<tcp::Event> e = tcp::event(m);
          if (!e || e->kind != tcp::Event::Kind::data) return;
          ASSERT_TRUE(tcp::send(c, s, e->bytes));
          tcp::set_active(c, s, tcp::Active::once);
        }
      });
      monitors.push_back(server_monitor);
      ASSERT_TRUE(tcp::controlling_process(p, s, server));
      p.send(server, s);
    }
    int echoed = 0;
    for (int i = 0; i < 20; ++i) {
      std::optional<Value> m = p.receive(
          [](const Value& v) { return v.as_tuple() && (*v.as_tuple())[0] == Value("echoed"); },
          kWait);
      ASSERT_TRUE(m);
      const Tuple* t = m->as_tuple();
      ASSERT_TRUE(t && (*t)[0] == Value("echoed"));
      EXPECT_EQ((*t)[1].as_binary()->bytes.rfind("client ", 0), 0u);
      ++echoed;
    }
    EXPECT_EQ(echoed, 20);
    tcp::close(p, listener);
    for (const Reference& r : monitors) {
      std::optional<Map> reason = wait_down(p, r);
      EXPECT_EQ(kind(reason), "normal") << (reason ? Value(*reason).to_string() : "");
    }
    // The accepted sockets left with their servers, the channels with
    // their processes: nothing is left.
    EXPECT_EQ(count_fds(), fds_before);
  });
}

// tcp::gateway_start in a process with no gateway channel: a clear error.
TEST(TcpGateway, OutsideAHandoffWorkerItIsNotAWorker) {
  run_system([](Process& p) {
    try {
      tcp::gateway_start(p);
      ADD_FAILURE() << "gateway_start without a gateway channel";
    } catch (const tcp::Error& e) {
      EXPECT_EQ(e.reason(), "not_a_worker") << e.what();
    }
    EXPECT_FALSE(tcp::gateway_finished(p, 1));
    EXPECT_FALSE(tcp::gateway_conn(tuple("gateway_conn", int64_t{1})));
  });
}

// The coordinator's side of a handoff worker's channel, scripted in a child
// of the test: hello, a connection with "abc" waiting in it, a ping, then
// drain and close. Exits 0 when the worker said hello (with conn_batches),
// ready, pong 5 and closed 7; another code names the step that failed.
[[noreturn]] void scripted_coordinator(int ours) {
  using namespace workers;
  auto next = [ours]() {
    pollfd p{ours, POLLIN, 0};
    if (::poll(&p, 1, 20'000) != 1) _exit(10);
    Received r = receive_datagram(ours, 1);
    if (r.status != ReceiveStatus::message) _exit(11);
    std::string reason, error;
    std::optional<Message> m = decode_message(r.payload, reason, error);
    if (!m) _exit(12);
    return *m;
  };
  auto expect = [&next](MessageType want) {
    Message m = next();
    if (m.type != want) _exit(13);
    return m;
  };
  if (send_datagram(ours, encode_hello_coordinator())) _exit(20);
  if (!expect(MessageType::hello).conn_batches) _exit(21);
  expect(MessageType::ready);
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    _exit(30);
  UniqueFd client = raw_connect(ntohs(a.sin_port));
  UniqueFd server(::accept(listener.get(), nullptr, nullptr));
  if (!client || !server || !write_all(client.get(), "abc")) _exit(31);
  ConnHeader h;
  h.id = 7;
  h.peer = "127.0.0.1:1";
  h.local = "127.0.0.1:2";
  const int fd = server.get();
  if (send_datagram(ours, encode_conn(h), fd)) _exit(32);
  server.reset();
  if (send_datagram(ours, encode_ping(5))) _exit(33);
  // The pong and the worker's `closed` in either order.
  bool pong = false, closed = false;
  while (!pong || !closed) {
    const Message m = next();
    if (m.type == MessageType::pong && m.seq == 5 && !pong)
      pong = true;
    else if (m.type == MessageType::closed && m.id == 7 && !closed)
      closed = true;
    else
      _exit(34);
  }
  if (send_datagram(ours, encode_drain(1000))) _exit(36);
  // A conn without its fd breaks the protocol: the worker says so and stops.
  if (send_datagram(ours, encode_conn(h))) _exit(38);
  const Message bye = expect(MessageType::exit);
  if (!bye.is_error || bye.text != "protocol_error") _exit(39);
  // Once the worker has the drain: the channel closes.
  pollfd eof{client.get(), POLLIN, 0};
  char byte;
  if (::poll(&eof, 1, 20'000) != 1 || ::read(client.get(), &byte, 1) != 0)
    _exit(37);  // the worker closed the connection
  _exit(0);
}

// run() gives the worker control channel of OCCASIONAL_CONTROL_FD to
// process zero alone; gateway_start speaks the worker protocol on it, and
// the connection it hands over is process zero's socket, data and all.
TEST(TcpGateway, RunGivesTheChannelToProcessZeroWhichTakesConnectionsInItsInbox) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd ours(pair[0]), theirs(pair[1]);
  int result_pipe[2];
  ASSERT_EQ(::pipe2(result_pipe, O_CLOEXEC), 0);
  UniqueFd result(result_pipe[0]), result_w(result_pipe[1]);
  // Not a child of this process: run() makes it a coordinator, which ends
  // children it did not start. The grandchild writes its exit code to the pipe.
  std::fflush(nullptr);
  const pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    if (::fork() != 0) _exit(0);
    theirs.reset();
    result.reset();
    const pid_t script = ::fork();
    if (script == 0) scripted_coordinator(ours.get());
    int status = 0;
    ::waitpid(script, &status, 0);
    const char code = static_cast<char>(WIFEXITED(status) ? WEXITSTATUS(status) : 100);
    (void)!::write(result_w.get(), &code, 1);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(middle, nullptr, 0), middle);
  ours.reset();
  result_w.reset();
  ::setenv(workers::kControlFdEnv, std::to_string(theirs.get()).c_str(), 1);
  ::setenv("OCCASIONAL_SERVICE", "scripted", 1);  // as a coordinator starts a worker
  struct stat channel {};
  ASSERT_EQ(::fstat(theirs.get(), &channel), 0);
  const int given = theirs.release();  // run() takes it
  run_system([](Process& p) {
    EXPECT_EQ(std::getenv(workers::kControlFdEnv), nullptr);
    // A spawned process has no gateway: it is process zero's alone.
    auto [child, monitor] =
        p.spawn_monitor([](Process& c) { EXPECT_THROW(tcp::gateway_start(c), tcp::Error); });
    EXPECT_EQ(kind(wait_down(p, monitor)), "normal");
    tcp::gateway_start(p, {tcp::Active::once, true});
    const std::optional<Value> m =
        p.receive([](const Value& v) { return tcp::gateway_conn(v).has_value(); }, kWait);
    ASSERT_TRUE(m) << "no connection from the gateway";
    const std::optional<tcp::GatewayConn> c = tcp::gateway_conn(*m);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->id, 7u);
    EXPECT_EQ(c->peer, "127.0.0.1:1");
    EXPECT_EQ(c->local, "127.0.0.1:2");
    std::string got;
    while (got.size() < 3) {
      std::optional<Value> data = p.receive(tcp::messages_of(c->socket), kWait);
      ASSERT_TRUE(data);
      std::optional<tcp::Event> e = tcp::event(*data);
      ASSERT_TRUE(e && e->kind == tcp::Event::Kind::data);
      got += e->bytes;
      tcp::set_active(p, c->socket, tcp::Active::once);
    }
    EXPECT_EQ(got, "abc");
    EXPECT_TRUE(tcp::gateway_finished(p, c->id));
    std::optional<Value> drain = p.receive(
        [](const Value& v) {
          const Tuple* t = v.as_tuple();
          return t && !t->empty() && (*t)[0] == Value("gateway_drain");
        },
        kWait);
    ASSERT_TRUE(drain);
    EXPECT_EQ(*drain, tuple("gateway_drain", int64_t{1000}));
    tcp::close(p, c->socket);
    std::optional<Value> lost = p.receive(
        [](const Value& v) { return v.as_tuple() && (*v.as_tuple())[0] == Value("gateway_lost"); },
        kWait);
    ASSERT_TRUE(lost);
    EXPECT_EQ(*lost, tuple("gateway_lost", "protocol_error: conn with 0 fds, not 1"));
    // Said once: the channel is not read again (a second one would have
    // come in the same read, so it would be in the inbox already).
    EXPECT_FALSE(p.receive(
        [](const Value& v) { return v.as_tuple() && (*v.as_tuple())[0] == Value("gateway_lost"); },
        0ms));
    EXPECT_FALSE(tcp::gateway_finished(p, c->id));
  });
  ::unsetenv("OCCASIONAL_SERVICE");
  ::unsetenv(workers::kControlFdEnv);  // run() removed it; in case it failed first
  // The number may name another file since; not the channel.
  struct stat now {};
  EXPECT_TRUE(::fstat(given, &now) != 0 || now.st_ino != channel.st_ino)
      << "run() left the channel open in the coordinator";
  pollfd done{result.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&done, 1, static_cast<int>(kWait.count())), 1);
  char code = 99;
  ASSERT_EQ(::read(result.get(), &code, 1), 1);
  EXPECT_EQ(code, 0) << "the scripted coordinator failed at step " << int(code);
}

}  // namespace
}  // namespace occasional
