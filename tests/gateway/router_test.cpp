#include "gateway/router.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include "gateway/dispatcher.hpp"
#include "gateway/gateway.hpp"
#include "tests/integration/http_client.hpp"
#include "workers/control_channel.hpp"

namespace occasional::gateway {
namespace {

using namespace std::chrono_literals;

// Real loopback TCP connections (the router peeks with MSG_PEEK and waits
// with SO_RCVLOWAT, which is what is under test), routed to one handoff
// service whose single worker is the other end of a real socket pair.
class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(listener_.get(), 16), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    dispatcher_.add_service(io_, "svc", BalancerConfig{}, log_);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    worker_end_ = UniqueFd(sv[1]);
    link_ = std::make_unique<supervisor::WorkerLink>(io_, UniqueFd(sv[0]),
                                                     supervisor::WorkerLink::Handlers{});
    dispatcher_.on_ready("svc", 0, link_.get());
  }

  void make_router(std::vector<Route> routes, PeekLimits limits = {}, size_t max_routing = 1000) {
    stats_.routing_max = max_routing;
    router_ = std::make_unique<Router>(io_, RouteTable(std::move(routes)), limits, dispatcher_,
                                       stats_, log_);
  }

  // Connects a client; routes the server's end. Returns the client's end.
  UniqueFd connect_and_route(const std::string& first_bytes) {
    UniqueFd client = testing::connect_loopback(port_);
    EXPECT_TRUE(client);
    if (!first_bytes.empty()) {
      EXPECT_EQ(::send(client.get(), first_bytes.data(), first_bytes.size(), 0),
                static_cast<ssize_t>(first_bytes.size()));
    }
    UniqueFd server(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    EXPECT_TRUE(server);
    server_fd_ = server.get();  // the router registers this very fd
    workers::ConnHeader h;
    h.id = next_id_++;
    h.peer = "127.0.0.1:1";
    router_->route(std::move(server), std::move(h));
    return client;
  }

  // Runs the loop until `done` holds or two seconds passed.
  bool run_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.run_one_for(5ms);
    }
    return true;
  }

  // The connection the worker received, with its fd; nullopt when none came.
  struct Handed {
    workers::ConnHeader header;
    UniqueFd fd;
  };
  std::optional<Handed> received() {
    workers::Received r = workers::receive_datagram(worker_end_.get(), 1);
    if (r.status != workers::ReceiveStatus::message) return std::nullopt;
    workers::Message m;
    std::string reason, error;
    EXPECT_TRUE(workers::decode_message(r.payload, m, reason, error)) << error;
    EXPECT_EQ(r.fds.size(), 1u);
    if (r.fds.empty()) return std::nullopt;
    return Handed{m.conn, std::move(r.fds[0])};
  }

  // All the client reads until the gateway closes (or two seconds pass).
  static std::string read_all(int fd) {
    std::string out;
    char buf[1024];
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 2000) == 1) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  // Whether the peer closed `fd` (EOF or reset), waiting up to `timeout`.
  static bool closed_by_peer(int fd, std::chrono::milliseconds timeout = 2s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char b;
    return ::recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
  }

  uint64_t rejected(const std::string& reason) {
    auto it = stats_.rejected.find(reason);
    return it == stats_.rejected.end() ? 0 : it->second;
  }

  boost::asio::io_context io_;
  metrics::ConnectionStats stats_;
  supervisor::EventLog log_{supervisor::LogFormat::json, -1};
  Dispatcher dispatcher_{stats_};
  UniqueFd listener_;
  uint16_t port_ = 0;
  int server_fd_ = -1;  // the server's end of the last connection, now the router's
  UniqueFd worker_end_;
  std::unique_ptr<supervisor::WorkerLink> link_;
  std::unique_ptr<Router> router_;
  uint64_t next_id_ = 1;
};

Route preface_route(const std::string& line) {
  return Route{RouteKind::preface, "svc", line, "", "", ""};
}

TEST_F(RouterTest, AnFdTheReactorRefusesIsClosedAndCountedWithoutThrowing) {
  make_router({preface_route("svc")});
  // An fd number nothing has open: epoll_ctl refuses it as it refuses one
  // under ENOMEM, and Asio would throw from a constructor.
  int free_number = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(free_number, 0);
  ::close(free_number);
  workers::ConnHeader h;
  h.id = 1;
  EXPECT_NO_THROW(router_->route(UniqueFd(free_number), std::move(h)));
  EXPECT_EQ(rejected("register_failed"), 1u);
  EXPECT_EQ(router_->peeking(), 0u);
  EXPECT_EQ(stats_.peeking, 0u);
}

TEST_F(RouterTest, APrefaceLineIsConsumedAndTheRestGoesToTheWorker) {
  make_router({preface_route("svc")});
  UniqueFd client = connect_and_route("svc\r\nhello");
  std::optional<Handed> h;
  ASSERT_TRUE(run_until([&] { return (h = received()).has_value(); }));
  EXPECT_EQ(h->header.service, "svc");
  EXPECT_EQ(h->header.route, "preface");
  char buf[16] = {};
  EXPECT_EQ(::recv(h->fd.get(), buf, sizeof buf, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_EQ(stats_.peeking, 0u);
  EXPECT_EQ(stats_.handed_off, 1u);
}

TEST_F(RouterTest, BytesArrivingOneAtATimeAreRoutedOnceTheLineIsWhole) {
  make_router({preface_route("svc")});
  UniqueFd client = connect_and_route("s");
  // After each peek of a partial line the router waits for one byte more
  // than it saw (SO_RCVLOWAT on its fd): that it got there is the proof it
  // peeked every byte so far, and it must not have handed anything off.
  auto peeked = [&](int bytes) {
    return run_until([&] {
      int lowat = 0;
      socklen_t len = sizeof lowat;
      return ::getsockopt(server_fd_, SOL_SOCKET, SO_RCVLOWAT, &lowat, &len) == 0 &&
             lowat == bytes + 1;
    });
  };
  ASSERT_TRUE(peeked(1));
  for (char c : std::string("vc")) {
    EXPECT_EQ(stats_.handed_off, 0u);
    EXPECT_FALSE(received().has_value());
    ASSERT_EQ(::send(client.get(), &c, 1, 0), 1);
    ASSERT_TRUE(peeked(c == 'v' ? 2 : 3)) << c;
  }
  EXPECT_EQ(stats_.handed_off, 0u);
  EXPECT_FALSE(received().has_value());
  ASSERT_EQ(::send(client.get(), "\n", 1, 0), 1);
  std::optional<Handed> h;
  ASSERT_TRUE(run_until([&] { return (h = received()).has_value(); }));
  EXPECT_EQ(h->header.route, "preface");
}

TEST_F(RouterTest, ASilentClientIsClosedAtThePeekTimeout) {
  make_router({preface_route("svc")}, PeekLimits{4096, 50ms});
  UniqueFd client = connect_and_route("");
  ASSERT_TRUE(run_until([&] { return rejected("peek_timeout") == 1; }));
  EXPECT_TRUE(closed_by_peer(client.get()));
  EXPECT_EQ(stats_.peeking, 0u);
}

TEST_F(RouterTest, AnUnknownPrefaceWithoutADefaultIsNoRoute) {
  make_router({preface_route("svc")});
  UniqueFd client = connect_and_route("other\n");
  ASSERT_TRUE(run_until([&] { return rejected("no_route") == 1; }));
  EXPECT_TRUE(closed_by_peer(client.get()));
  EXPECT_FALSE(received().has_value());
}

TEST_F(RouterTest, AnUnknownPrefaceGoesToTheDefaultRouteUnconsumed) {
  make_router({preface_route("svc"), Route{RouteKind::default_route, "svc", "", "", "", ""}});
  UniqueFd client = connect_and_route("other\n");
  std::optional<Handed> h;
  ASSERT_TRUE(run_until([&] { return (h = received()).has_value(); }));
  EXPECT_EQ(h->header.route, "default");
  char buf[16] = {};
  EXPECT_EQ(::recv(h->fd.get(), buf, sizeof buf, 0), 6);
}

TEST_F(RouterTest, MoreThanMaxBytesWithoutADecisionIsTooLarge) {
  make_router({preface_route("svc")}, PeekLimits{16, 2s});
  UniqueFd client = connect_and_route(std::string(40, 'a'));
  // A name that may still end in a line break, past max_bytes.
  ASSERT_TRUE(run_until([&] { return rejected("too_large") == 1; }));
  EXPECT_TRUE(closed_by_peer(client.get()));
  make_router({Route{RouteKind::http, "svc", "", "", "", ""}}, PeekLimits{16, 2s});
  UniqueFd http = connect_and_route("GET /a-long-path HTTP/1.1\r\n");
  ASSERT_TRUE(run_until([&] { return rejected("too_large") == 2; }));
  EXPECT_TRUE(read_all(http.get()).starts_with("HTTP/1.1 431 "));
}

TEST_F(RouterTest, ADefaultOnlyTableHandsOffWithoutPeeking) {
  make_router({Route{RouteKind::default_route, "svc", "", "", "", ""}});
  UniqueFd client = connect_and_route("");
  // Handed off inside route(): nothing was waited for.
  std::optional<Handed> h = received();
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->header.route, "default");
  EXPECT_EQ(stats_.peeking, 0u);
}

TEST_F(RouterTest, CloseAllClosesConnectionsStillBeingRouted) {
  make_router({preface_route("svc")});
  UniqueFd a = connect_and_route("");
  UniqueFd b = connect_and_route("sv");
  ASSERT_TRUE(run_until([&] { return router_->peeking() == 2; }));
  router_->close_all();
  EXPECT_EQ(rejected("shutdown"), 2u);
  EXPECT_EQ(stats_.peeking, 0u);
  EXPECT_TRUE(closed_by_peer(a.get()));
  EXPECT_TRUE(closed_by_peer(b.get()));
}

TEST_F(RouterTest, AtTheRoutingCapANewConnectionClosesTheOldestBeingRouted) {
  make_router({preface_route("svc")}, PeekLimits{}, 2);
  UniqueFd oldest = connect_and_route("");
  UniqueFd second = connect_and_route("");
  ASSERT_TRUE(run_until([&] { return stats_.peeking == 2; }));
  UniqueFd third = connect_and_route("svc\n");
  EXPECT_EQ(rejected("routing_cap"), 1u);
  EXPECT_TRUE(closed_by_peer(oldest.get()));
  // The newest, which spoke at once, is routed.
  std::optional<Handed> h;
  ASSERT_TRUE(run_until([&] { return (h = received()).has_value(); }));
  EXPECT_EQ(stats_.peeking, 1u);
  EXPECT_FALSE(closed_by_peer(second.get(), 0ms));
}

TEST_F(RouterTest, HttpRejectionsAreAnsweredAndOtherKindsAreClosedBare) {
  make_router({Route{RouteKind::http, "svc", "", "known", "", ""}}, PeekLimits{64, 100ms});
  UniqueFd no_route = connect_and_route("GET / HTTP/1.1\r\nHost: other\r\n\r\n");
  UniqueFd bad_host = connect_and_route("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  UniqueFd malformed = connect_and_route("GET / SPDY/3\r\n\r\n");
  UniqueFd large = connect_and_route("GET / HTTP/1.1\r\nCookie: " + std::string(100, 'c'));
  UniqueFd slow = connect_and_route("GET / HTTP/1.1\r\n");
  ASSERT_TRUE(run_until([&] { return rejected("peek_timeout") == 1; }));
  EXPECT_TRUE(read_all(no_route.get()).starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(read_all(bad_host.get()).starts_with("HTTP/1.1 400 "));
  EXPECT_TRUE(read_all(malformed.get()).starts_with("HTTP/1.1 400 "));
  EXPECT_TRUE(read_all(large.get()).starts_with("HTTP/1.1 431 "));
  EXPECT_TRUE(read_all(slow.get()).starts_with("HTTP/1.1 408 "));
  EXPECT_EQ(
      rejected("no_route") + rejected("bad_host") + rejected("malformed") + rejected("too_large"),
      4u);

  make_router({preface_route("svc")});
  UniqueFd preface = connect_and_route("other\n");
  ASSERT_TRUE(run_until([&] { return rejected("no_route") == 2; }));
  EXPECT_EQ(read_all(preface.get()), "");
}

TEST_F(RouterTest, AnHttpRequestIsRoutedOnceItsHostIsInWhateverFollows) {
  make_router({Route{RouteKind::http, "svc", "", "h", "", ""}}, PeekLimits{1024, 2s});
  // A cookie longer than the peek limit, after Host: routed, not too_large.
  UniqueFd client = connect_and_route(
      "GET / HTTP/1.1\r\nHost: h\r\nCookie: " + std::string(5000, 'c') + "\r\n\r\n");
  std::optional<Handed> h;
  ASSERT_TRUE(run_until([&] { return (h = received()).has_value(); }));
  EXPECT_EQ(h->header.route, "http");
  EXPECT_EQ(rejected("too_large"), 0u);
}

// Half the fd limit, but a limit of about 1e9 (containerd's) bounds nothing.
TEST(MaxRoutingTest, HalfTheFdLimitFrom64ToAMillion) {
  EXPECT_EQ(max_routing_for(1024), 512u);
  EXPECT_EQ(max_routing_for(100), 64u);
  EXPECT_EQ(max_routing_for(524288), 262144u);
  EXPECT_EQ(max_routing_for(1'073'741'816), 1'000'000u);
}

}  // namespace
}  // namespace occasional::gateway
