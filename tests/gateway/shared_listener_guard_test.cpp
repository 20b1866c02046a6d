#include "gateway/shared_listener_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>
#include <chrono>
#include <functional>

#include "tests/integration/http_client.hpp"

namespace occasional::gateway {
namespace {

using namespace std::chrono_literals;

// A real listener (the guard accepts on it while it refuses) and a guard for
// service "svc" with a 20 ms grace; supervisor reports are made by hand.
class SharedListenerGuardTest : public ::testing::Test {
 protected:
  UniqueFd connect_client() {
    UniqueFd fd = testing::connect_loopback(listener_.port());
    EXPECT_TRUE(fd);
    return fd;
  }

  // Runs the loop until `done` holds or `timeout` passed.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 2s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.restart();  // it stops whenever it runs out of work
      io_.run_one_for(5ms);
    }
    return true;
  }

  // Runs the loop for `d`: what is due in it (a grace timer) runs.
  void run_for(std::chrono::milliseconds d) {
    io_.restart();
    io_.run_for(d);
  }

  // Whether the coordinator's side closed `fd`, running the loop meanwhile.
  bool closed_by_peer(int fd) {
    return run_until([fd] {
      pollfd p{fd, POLLIN, 0};
      char b;
      return ::poll(&p, 1, 0) == 1 && ::recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
    });
  }

  supervisor::ExitRecord exit_of(int replica) {
    supervisor::ExitRecord r;
    r.service = "svc";
    r.replica = replica;
    return r;
  }

  boost::asio::io_context io_;
  metrics::ConnectionStats stats_;
  supervisor::EventLog log_{supervisor::LogFormat::json, -1};
  Listener listener_{io_, "shared", parse_listen_address("127.0.0.1:0"), false, stats_, log_};
  SharedListenerGuard guard_{io_, listener_, {"svc"}, 20ms, stats_, log_};
};

TEST_F(SharedListenerGuardTest, WithNoWorkerReadyForTheGraceClientsAreRefusedUntilOneIs) {
  guard_.start();
  ASSERT_TRUE(run_until([&] { return guard_.refusing(); }));
  UniqueFd refused = connect_client();
  EXPECT_TRUE(closed_by_peer(refused.get()));
  EXPECT_TRUE(run_until([&] { return stats_.rejected["no_worker"] == 1; }));

  // A worker is spawned: refused still, until it is ready.
  guard_.on_spawned("svc", 0, 1234);
  EXPECT_TRUE(guard_.refusing());
  // Ready: the socket is the workers'; the coordinator takes nothing.
  guard_.on_ready("svc", 0, nullptr);
  EXPECT_FALSE(guard_.refusing());
  UniqueFd waiting = connect_client();
  run_for(50ms);
  EXPECT_EQ(stats_.accepted, 1u);

  // Another service's reports change nothing.
  guard_.on_exited([] {
    supervisor::ExitRecord r;
    r.service = "other";
    return r;
  }());
  run_for(50ms);
  EXPECT_FALSE(guard_.refusing());

  // Its last worker exits: after the grace, the one waiting is refused too.
  guard_.on_exited(exit_of(0));
  EXPECT_FALSE(guard_.refusing());
  ASSERT_TRUE(run_until([&] { return guard_.refusing(); }));
  EXPECT_TRUE(closed_by_peer(waiting.get()));
}

TEST_F(SharedListenerGuardTest, AWorkerBackWithinTheGraceRefusesNobody) {
  guard_.start();
  guard_.on_spawned("svc", 0, 1);
  guard_.on_spawned("svc", 1, 2);
  guard_.on_ready("svc", 0, nullptr);
  guard_.on_ready("svc", 1, nullptr);
  guard_.on_exited(exit_of(0));
  run_for(60ms);  // past the grace: one replica is still ready
  EXPECT_FALSE(guard_.refusing());
  guard_.on_exited(exit_of(1));
  guard_.on_spawned("svc", 1, 3);  // restarted and ready within the grace
  guard_.on_ready("svc", 1, nullptr);
  run_for(60ms);
  EXPECT_FALSE(guard_.refusing());
  EXPECT_EQ(stats_.accepted, 0u);
}

TEST_F(SharedListenerGuardTest, AnIdleServiceIsRefusedAtOnceAndStopEndsItForGood) {
  guard_.start();
  guard_.on_spawned("svc", 0, 1);
  guard_.on_exited(exit_of(0));
  guard_.on_idle("svc");  // failed or stopped: nothing is coming
  EXPECT_TRUE(guard_.refusing());
  guard_.stop();
  EXPECT_FALSE(guard_.refusing());
  guard_.on_spawned("svc", 0, 2);
  guard_.on_exited(exit_of(0));
  guard_.on_idle("svc");
  run_for(60ms);
  EXPECT_FALSE(guard_.refusing());
}

// A failed service is retried after its cool-off, not within the grace: it
// is refused as soon as its last worker has gone, whichever is reported
// first, until a worker is ready again.
TEST_F(SharedListenerGuardTest, AFailedServiceIsRefusedAtOnceUntilAWorkerIsReady) {
  guard_.start();
  guard_.on_spawned("svc", 0, 1);
  guard_.on_spawned("svc", 1, 2);
  guard_.on_ready("svc", 0, nullptr);
  guard_.on_ready("svc", 1, nullptr);
  guard_.on_exited(exit_of(0));
  guard_.on_service_failed("svc", 5, std::chrono::seconds(60));
  EXPECT_FALSE(guard_.refusing());  // replica 1 still accepts
  guard_.on_exited(exit_of(1));
  EXPECT_TRUE(guard_.refusing());
  UniqueFd refused = connect_client();
  EXPECT_TRUE(closed_by_peer(refused.get()));

  // The retry spawns a worker; once it is ready the socket is the
  // workers' again, and its next exit has the grace.
  guard_.on_spawned("svc", 0, 3);
  EXPECT_TRUE(guard_.refusing());
  guard_.on_ready("svc", 0, nullptr);
  EXPECT_FALSE(guard_.refusing());
  guard_.on_exited(exit_of(0));
  EXPECT_FALSE(guard_.refusing());
  ASSERT_TRUE(run_until([&] { return guard_.refusing(); }));

  // Failed after its last worker has gone: at once too.
  guard_.on_spawned("svc", 0, 4);
  guard_.on_ready("svc", 0, nullptr);
  guard_.on_exited(exit_of(0));
  EXPECT_FALSE(guard_.refusing());
  guard_.on_service_failed("svc", 5, std::chrono::seconds(60));
  EXPECT_TRUE(guard_.refusing());
}

// A service that crash-loops before its workers are ready (issue 21: the
// clock used to start again at each spawn, so clients waited for the whole
// crash loop): refused once no worker has been ready for the grace,
// however often it respawns meanwhile; a worker that is running but not
// yet ready does not hold clients either.
TEST_F(SharedListenerGuardTest, ACrashLoopThatNeverGetsReadyIsRefusedAfterTheGrace) {
  guard_.start();
  const auto t0 = std::chrono::steady_clock::now();
  int pid = 1;
  EXPECT_TRUE(run_until(
      [&] {
        // A respawn every loop turn, each exiting before it is ready.
        guard_.on_spawned("svc", 0, pid++);
        guard_.on_exited(exit_of(0));
        return guard_.refusing();
      },
      1s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  // Spawned and running, not ready: still refused.
  guard_.on_spawned("svc", 0, pid++);
  UniqueFd refused = connect_client();
  EXPECT_TRUE(closed_by_peer(refused.get()));
  // A ready worker that turns unready (STOPPING=1, a missed watchdog) starts the clock.
  guard_.on_ready("svc", 0, nullptr);
  EXPECT_FALSE(guard_.refusing());
  guard_.on_unready("svc", 0);
  EXPECT_FALSE(guard_.refusing());
  EXPECT_TRUE(run_until([&] { return guard_.refusing(); }));
}

}  // namespace
}  // namespace occasional::gateway
