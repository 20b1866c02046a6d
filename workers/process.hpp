#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "workers/value.hpp"

namespace occasional {

// How spawn_port starts an executable (docs/messages.md "Ports").
struct PortOptions {
  std::vector<std::string> env;  // "KEY=VALUE", added to (and overriding) the coordinator's
  std::string cwd;               // empty: the coordinator's; a missing one is start_failed
  bool link = false;             // linked from the start
};

// One process of an occasional system, as its own code sees it: a Linux
// process with one inbox, which spawns, sends, receives, monitors and links
// the Erlang way. docs/messages.md is the reference for every call here.
//
// Every process is a child of the coordinator (run() makes one): spawn
// clones the caller with CLONE_PARENT, so the coordinator learns each exit
// from the kernel and reconciles it with what the process reported.
class Process {
 public:
  using Body = std::function<Value(Process&)>;
  using Match = std::function<bool(const Value&)>;

  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  ~Process();

  Address self() const;

  // Asynchronous: never waits for the receiver to process. Messages are
  // batched per receiver and written when a batch reaches 64 KiB, when its
  // first message is 100 us old at a later send, and before this process
  // waits (receive, any call that asks the coordinator), on flush(), and
  // when it returns (docs/messages.md, "When messages leave"). A message to
  // a process that has exited or never existed is dropped and counted
  // (dropped_sends()), as in Erlang. send_sync writes at once (with what is
  // batched before it) and reports that instead (false). Both block only
  // while the receiver's channel buffer is full, reading this process's own
  // incoming messages meanwhile. A value ETF cannot carry (a string that is
  // not UTF-8) throws std::invalid_argument.
  void send(const Address& to, const Value& v);
  bool send_sync(const Address& to, const Value& v);
  // To a registered name, looked up at each send; dropped if none.
  void send(std::string_view name, const Value& v);
  // Writes every batched message now (before a long computation, or before
  // exit() / _exit(), which do not flush).
  void flush();

  Value receive();                                                  // blocks
  std::optional<Value> receive(std::chrono::milliseconds timeout);  // 0 polls
  Value receive(const Match& match);
  std::optional<Value> receive(const Match& match, std::chrono::milliseconds timeout);

  // fn(Process&, args...) returning Value (or anything Value converts from,
  // or void) runs in a new process, a copy of this one (fork, not exec);
  // `fn` and `args` are copied into it. Throws std::logic_error when this
  // process has more than one thread (a forked child of a threaded process
  // may only make async-signal-safe calls), std::system_error when the
  // kernel refuses the clone.
  template <class F, class... A>
  Address spawn(F&& fn, A&&... args) {
    return spawn_body(make_body(std::forward<F>(fn), std::forward<A>(args)...), false, false).first;
  }
  // Linked from the start: no window in which the child can exit unseen.
  template <class F, class... A>
  Address spawn_link(F&& fn, A&&... args) {
    return spawn_body(make_body(std::forward<F>(fn), std::forward<A>(args)...), true, false).first;
  }
  template <class F, class... A>
  std::pair<Address, Reference> spawn_monitor(F&& fn, A&&... args) {
    auto spawned =
        spawn_body(make_body(std::forward<F>(fn), std::forward<A>(args)...), false, true);
    return {std::move(spawned.first), std::move(*spawned.second)};
  }
  // A port, as Erlang's open_port({spawn_executable, ...}, [{packet, 4}]):
  // the coordinator starts argv (PATH searched) with this process's control
  // channel as fd 3 (OCCASIONAL_CONTROL_FD=3), and it speaks the messages of
  // docs/messages.md there (C++: Process::attach(); Python:
  // workers/ports/occasional_port.py). It is a process like any other:
  // address, channels to anyone, monitors, links, names, exit reasons. An
  // exec failure (or a missing cwd) is the exit reason start_failed.
  Address spawn_port(std::vector<std::string> argv, const PortOptions& options = {});
  // Monitored from the start, so that a failed exec is seen (start_failed).
  std::pair<Address, Reference> spawn_port_monitor(std::vector<std::string> argv,
                                                   const PortOptions& options = {});
  // The first names of spawn_port and spawn_port_monitor, without options.
  Address spawn_executable(std::vector<std::string> argv) { return spawn_port(std::move(argv)); }
  std::pair<Address, Reference> spawn_executable_monitor(std::vector<std::string> argv) {
    return spawn_port_monitor(std::move(argv));
  }

  // DOWN arrives as ("DOWN", ref, address, reason); at once, with reason
  // noproc, for a process that has exited or never existed.
  Reference monitor(const Address& a);
  // Also removes a DOWN of this monitor already in the inbox (Erlang's
  // demonitor(Ref, [flush])).
  void demonitor(const Reference& r);
  void link(const Address& a);
  void unlink(const Address& a);
  void trap_exits(bool on);
  // false if taken, empty, or with a '/' (service/replica names are the workers').
  bool register_name(const std::string& name);
  std::optional<Address> whereis(const std::string& name);
  uint64_t dropped_sends() const;

  // For code that starts programs itself (exe, with Options::owner): `pid`,
  // a child of this process leading a process group of its own and not yet
  // reaped, becomes a process of the system with an address, owned by this
  // process (docs/exe.md, "Programs as processes"). Monitors and links work
  // on it; a link's kill SIGKILLs its group. Once the owner has reaped it,
  // adopted_exit says how it ended and its monitors get DOWN; if the owner
  // exits first, the coordinator SIGKILLs its group (DOWN: signal SIGKILL,
  // detail "its owner exited"). nullopt when `pid` is not such a child.
  std::optional<Address> adopt(pid_t pid);
  void adopted_exit(const Address& a, bool exited, int code_or_signal, bool core);

  // In an executable started by spawn_port: this process, on its
  // control fd. Reads the coordinator's hello (its address) first.
  static Process attach(int control_fd = 3);
  // In a supervised service's worker (occasional run, a config file): this
  // worker as a process of the coordinator's system, named service/replica
  // (docs/messages.md, "Workers are processes"), on the channel
  // OCCASIONAL_PROCESS_FD names; the variable is removed, so that programs
  // it starts do not take the fd for theirs. nullopt outside such a worker.
  // Throws std::runtime_error when the variable names no usable channel.
  static std::optional<Process> from_environment();
  // An fd for a worker's own event loop: readable when messages or notices
  // may be waiting. Then call receive(0ms) until it returns nullopt: what
  // the runtime has already read into the inbox does not make it readable.
  int wait_fd();

  // The runtime's side (workers/process.cpp); not for user code.
  struct Impl;
  explicit Process(std::unique_ptr<Impl> impl);
  Impl& impl() { return *impl_; }

 private:
  std::pair<Address, std::optional<Reference>> spawn_body(Body body, bool link, bool monitor);

  template <class F, class... A>
  static Body make_body(F&& fn, A&&... args) {
    return [fn = std::forward<F>(fn), ... args = std::forward<A>(args)](Process& p) mutable {
      using R = std::invoke_result_t<decltype(fn)&, Process&, decltype(args)&...>;
      if constexpr (std::is_void_v<R>) {
        std::invoke(fn, p, args...);
        return Value();
      } else {
        return Value(std::invoke(fn, p, args...));
      }
    };
  }

  std::unique_ptr<Impl> impl_;
};

// Makes the calling process the coordinator ("central services"), runs `zero`
// as process zero in a child, returns when process zero exits: its integer
// value if it returned one, 0 for another normal value, 1 for an error,
// 128+N if killed by signal N. The other processes are killed then (SIGKILL),
// reaped, and their fds closed. The caller must have one thread (it forks).
// Defined in the supervisor library (occasional_supervisor).
int run(std::function<Value(Process&)> zero);

}  // namespace occasional
