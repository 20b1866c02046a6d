// ZeroMQ over ipc:// between two processes, the peer the issue names: what
// a messaging library on the same kernel does with the same messages
// (8-byte int64 frames), default socket options.
//
//   msg_zmq reqrep N CPU_A CPU_B     REQ (A, times each round trip) <-> REP (B)
//   msg_zmq pushpull N CPU_A CPU_B   PUSH (B) sends N int64s -> PULL (A) times them
//
// Each side makes its own context after fork (a libzmq context must not
// cross a fork). Prints one JSON line (bench/msg_timing.hpp).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/msg_timing.hpp"

namespace {

using msgbench::now_ns;

[[noreturn]] void zdie(const char* what) {
  std::fprintf(stderr, "msg_zmq: %s: %s\n", what, zmq_strerror(zmq_errno()));
  std::_Exit(1);
}

void send64(void* s, int64_t v) {
  while (zmq_send(s, &v, sizeof v, 0) != int(sizeof v))
    if (zmq_errno() != EINTR) zdie("zmq_send");
}

int64_t recv64(void* s) {
  int64_t v = -1;
  int r;
  while ((r = zmq_recv(s, &v, sizeof v, 0)) < 0)
    if (zmq_errno() != EINTR) zdie("zmq_recv");
  if (r != int(sizeof v)) {
    std::fprintf(stderr, "msg_zmq: a %d-byte frame, expected 8\n", r);
    std::_Exit(1);
  }
  return v;
}

void* open_socket(void* ctx, int type, const std::string& endpoint, bool bind) {
  void* s = zmq_socket(ctx, type);
  if (!s) zdie("zmq_socket");
  int linger = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  if ((bind ? zmq_bind(s, endpoint.c_str()) : zmq_connect(s, endpoint.c_str())) != 0)
    zdie(bind ? "zmq_bind" : "zmq_connect");
  return s;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: msg_zmq reqrep|pushpull N CPU_A CPU_B\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) usage();
  std::string mode = argv[1];
  if (mode != "reqrep" && mode != "pushpull") usage();
  long n = std::atol(argv[2]);
  int cpu_a = std::atoi(argv[3]), cpu_b = std::atoi(argv[4]);
  if (n < 2) usage();
  long warmup = std::max(100L, n / 10);
  std::string path = "/tmp/occasional-msg-zmq-" + std::to_string(::getpid());
  std::string endpoint = "ipc://" + path;
  bool reqrep = mode == "reqrep";

  // B connects once A has bound, so that no part of a run is zmq's
  // reconnect interval.
  // And B closes its PUSH only when A has everything: libzmq 4.3.4 was seen
  // dropping the last messages of a closing PUSH whatever its linger, and
  // the PULL side then waited for ever.
  int bound[2], done[2];
  if (::pipe2(bound, O_CLOEXEC) != 0 || ::pipe2(done, O_CLOEXEC) != 0)
    msgbench::die("msg_zmq", "pipe2");
  pid_t child = ::fork();
  if (child < 0) msgbench::die("msg_zmq", "fork");
  if (child == 0) {
    ::close(bound[1]);
    ::close(done[1]);
    msgbench::pin(cpu_b);
    char c;
    if (::read(bound[0], &c, 1) != 1) std::_Exit(1);
    void* ctx = zmq_ctx_new();
    if (reqrep) {
      void* rep = open_socket(ctx, ZMQ_REP, endpoint, false);
      for (long i = 0; i < warmup + n; ++i) send64(rep, recv64(rep));
      zmq_close(rep);
    } else {
      void* push = open_socket(ctx, ZMQ_PUSH, endpoint, false);
      for (long i = 0; i < n; ++i) send64(push, i);
      if (::read(done[0], &c, 1) != 1) std::_Exit(1);
      zmq_close(push);
    }
    zmq_ctx_term(ctx);
    std::_Exit(0);
  }
  ::close(bound[0]);
  ::close(done[0]);
  msgbench::pin(cpu_a);
  void* ctx = zmq_ctx_new();
  std::string out;
  void* s = open_socket(ctx, reqrep ? ZMQ_REQ : ZMQ_PULL, endpoint, true);
  if (::write(bound[1], "b", 1) != 1) msgbench::die("msg_zmq", "write");
  if (reqrep) {
    void* req = s;
    std::vector<int64_t> samples;
    samples.reserve(size_t(n));
    for (long i = 0; i < warmup + n; ++i) {
      int64_t t0 = now_ns();
      send64(req, i);
      int64_t back = recv64(req);
      int64_t t1 = now_ns();
      if (back != i) {
        std::fprintf(stderr, "msg_zmq: echo of %ld came back as %lld\n", i, (long long)back);
        return 1;
      }
      if (i >= warmup) samples.push_back(t1 - t0);
    }
    out = msgbench::round_trip_json(std::move(samples));
    zmq_close(req);
  } else {
    void* pull = s;
    int64_t first = 0;
    for (long i = 0; i < n; ++i) {
      int64_t v = recv64(pull);
      if (i == 0) first = now_ns();
      if (v != i) {
        std::fprintf(stderr, "msg_zmq: value %ld arrived as %lld\n", i, (long long)v);
        return 1;
      }
    }
    out = msgbench::stream_json(n, first, now_ns());
    if (::write(done[1], "d", 1) != 1) msgbench::die("msg_zmq", "write");
    zmq_close(pull);
  }
  zmq_ctx_term(ctx);
  ::unlink(path.c_str());
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "msg_zmq: the child failed (status %d)\n", status);
    return 1;
  }
  std::printf("%s\n", out.c_str());
  return 0;
}
