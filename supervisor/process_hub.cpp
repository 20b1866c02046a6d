#include "supervisor/process_hub.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/system/error_code.hpp>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <utility>

#include "supervisor/spawner.hpp"
#include "workers/control_channel.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace occasional::supervisor {

namespace asio = boost::asio;
namespace pc = process_control;

namespace {

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

template <class T>
void erase_value(std::vector<T>& v, const T& x) {
  std::erase(v, x);
}

}  // namespace

ProcessHub::ProcessHub(asio::io_context& io, ChildReaper& reaper, const EventLog& log)
    : io_(io),
      reaper_(reaper),
      log_(log),
      node_("occasional@" + host_name()),
      creation_(static_cast<uint32_t>(std::time(nullptr))),
      self_pid_(::getpid()) {}

ProcessHub::~ProcessHub() {
  for (auto& [id, p] : procs_)
    if (p->held) reaper_.release_unwatched();
}

Address ProcessHub::address_of(uint32_t id) const {
  return Address{node_, id, 0, creation_};
}

Reference ProcessHub::make_ref() {
  const uint64_t n = next_ref_++;
  Reference r;
  r.node = node_;
  r.creation = creation_;
  r.size = 3;
  r.words = {static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32), 0, 0, 0};
  return r;
}

ProcessHub::Proc* ProcessHub::find(uint32_t id) {
  auto it = procs_.find(id);
  return it == procs_.end() ? nullptr : it->second.get();
}

ProcessHub::Proc* ProcessHub::live_proc(const Value& address) {
  const Address* a = address.as_address();
  if (!a || a->node != node_ || a->creation != creation_ || a->serial != 0) return nullptr;
  Proc* p = find(a->id);
  return p && !p->exited ? p : nullptr;
}

size_t ProcessHub::links() const {
  size_t ends = 0;
  for (const auto& [id, p] : procs_) ends += p->links.size();
  return ends / 2;
}

pid_t ProcessHub::pid_of(const Address& a) const {
  if (a.node != node_ || a.creation != creation_) return -1;
  auto it = procs_.find(a.id);
  return it == procs_.end() ? -1 : it->second->pid;
}

ProcessHub::Proc& ProcessHub::create(UniqueFd& child_end) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    throw std::system_error(errno, std::system_category(), "socketpair() for a process");
  UniqueFd ours(fds[0]);
  child_end.reset(fds[1]);
  auto p = std::make_unique<Proc>();
  p->id = next_id_++;
  p->control = std::make_unique<asio::posix::stream_descriptor>(io_);
  p->control->assign(ours.get());  // throws (epoll) with the fd still ours to close
  ours.release();
  Proc& ref = *p;
  procs_.emplace(ref.id, std::move(p));
  ++stats_.spawned;
  wait_control(ref.id);
  return ref;
}

ProcessHub::Opened ProcessHub::open_process() {
  Opened out;
  Proc& p = create(out.child_control);
  out.address = address_of(p.id);
  return out;
}

ProcessHub::Opened ProcessHub::open_worker(const std::string& name) {
  Opened out = open_process();
  Proc& p = *find(out.address.id);
  p.worker = true;
  if (!name.empty() && !names_.contains(name)) {
    names_.emplace(name, p.id);
    p.names.push_back(name);
  } else {
    log_.event(LogLevel::warn, "process_name_taken")
        .str("name", name)
        .str("action", "the worker runs without it; the process holding it keeps it");
  }
  notify(p, tuple(pc::kHello, out.address, static_cast<int64_t>(self_pid_)));
  return out;
}

void ProcessHub::worker_started(const Address& a, pid_t pid) {
  Proc* p = live_proc(Value(a));
  if (!p || !p->worker) return;
  p->pid = pid;
  if (p->kill_pending) reaper_.signal(pid, SIGKILL);
}

void ProcessHub::worker_failed(const Address& a, const std::string& why) {
  Proc* p = live_proc(Value(a));
  if (!p || !p->worker) return;
  p->evidence.start_error = why;
  finish(p->id, reconcile_exit(siginfo_t{}, p->evidence));
}

void ProcessHub::worker_exited(const Address& a, const siginfo_t& info) {
  Proc* p = live_proc(Value(a));
  if (!p || !p->worker) return;
  on_reaped(p->id, info);
}

std::string ProcessHub::not_carriable() const {
  size_t others = 0;
  for (const auto& [id, p] : procs_) others += !p->exited && !p->worker;
  if (others > 0)
    return std::to_string(others) +
           " process(es) spawned by workers (or ports, or adopted programs) are alive";
  for (const auto& [id, p] : procs_) {
    if (p->exited) continue;
    const std::string who =
        "worker " + (p->names.empty() ? Value(address_of(id)).to_string() : p->names.front());
    if (!p->monitoring.empty() || !p->monitored_by.empty())
      return who + " holds or is the target of a monitor";
    if (!p->links.empty()) return who + " is linked";
    if (p->names.size() > 1) return who + " has registered names";
    if (p->trap_exits) return who + " traps exits";
    if (!p->outbox.empty()) return who + " has notices it has not read";
  }
  return {};
}

ProcessHub::Carried ProcessHub::carry() const {
  return Carried{creation_, next_id_, next_ref_};
}

void ProcessHub::adopt(const Carried& carried) {
  creation_ = carried.creation;
  next_id_ = std::max(next_id_, carried.next_id);
  next_ref_ = std::max(next_ref_, carried.next_ref);
}

int ProcessHub::control_fd(const Address& a) const {
  if (a.node != node_ || a.creation != creation_) return -1;
  auto it = procs_.find(a.id);
  return it == procs_.end() || !it->second->control_open ? -1
                                                         : it->second->control->native_handle();
}

Address ProcessHub::adopt_worker(uint32_t id, const std::string& name, pid_t pid,
                                 UniqueFd control) {
  auto p = std::make_unique<Proc>();
  p->id = id;
  p->pid = pid;
  p->worker = true;
  p->control = std::make_unique<asio::posix::stream_descriptor>(io_);
  p->control->assign(control.get());
  control.release();
  if (!names_.contains(name)) {
    names_.emplace(name, id);
    p->names.push_back(name);
  }
  next_id_ = std::max(next_id_, id + 1);
  procs_.emplace(id, std::move(p));
  wait_control(id);
  return address_of(id);
}

std::error_code ProcessHub::started(const Address& a, pid_t pid) {
  Proc* p = live_proc(Value(a));
  if (!p || p->pid > 0) return std::make_error_code(std::errc::invalid_argument);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    std::error_code ec(errno, std::system_category());
    p->evidence.start_error = std::string("pidfd_open: ") + std::strerror(errno);
    release_hold(*p);
    finish(p->id, reconcile_exit(siginfo_t{}, p->evidence));
    return ec;
  }
  return watch(*p, pid, std::move(pidfd));
}

std::error_code ProcessHub::watch(Proc& p, pid_t pid, UniqueFd pidfd) {
  const uint32_t id = p.id;
  p.pid = pid;
  std::error_code ec = reaper_.watch(pid, std::move(pidfd),
                                     [this, id](const siginfo_t& info) { on_reaped(id, info); });
  release_hold(p);
  if (ec) {
    log_.event(LogLevel::error, "process_watch_failed").num("pid", pid).str("error", ec.message());
    p.evidence.start_error = "watch: " + ec.message();
    finish(id, reconcile_exit(siginfo_t{}, p.evidence));
    return ec;
  }
  if (p.kill_pending) reaper_.signal(pid, SIGKILL);
  // It asked to adopt programs before its spawner reported its pid.
  for (auto& [tag, child] : std::exchange(p.pending_adopts, {}))
    if (Proc* q = find(id)) do_adopt(*q, tag, Value(static_cast<int64_t>(child)));
  return {};
}

void ProcessHub::release_hold(Proc& p) {
  if (p.spawner != 0) {
    if (Proc* s = find(p.spawner)) erase_value(s->unreported, p.id);
    p.spawner = 0;
  }
  if (p.held) {
    p.held = false;
    reaper_.release_unwatched();
  }
}

void ProcessHub::kill_all() {
  for (auto& [id, p] : procs_) {
    if (p->pid <= 0) continue;
    if (p->adopted_pidfd) {
      kill(*p);
      continue;
    }
    reaper_.signal_group(p->pid, SIGKILL);
    reaper_.signal(p->pid, SIGKILL);
  }
}

// --- control channels ---

void ProcessHub::wait_control(uint32_t id) {
  Proc* p = find(id);
  if (!p || !p->control_open) return;
  p->control->async_wait(asio::posix::stream_descriptor::wait_read,
                         [this, id](const boost::system::error_code& ec) {
                           if (ec) return;
                           Proc* p = find(id);
                           if (!p) return;
                           read_control(*p);
                           wait_control(id);
                         });
}

void ProcessHub::read_control(Proc& p) {
  const uint32_t id = p.id;
  while (Proc* q = find(id)) {
    if (!q->control_open) return;
    workers::Received r = workers::receive_datagram(q->control->native_handle(), 0);
    switch (r.status) {
      case workers::ReceiveStatus::message: {
        q->spoke = true;
        std::string error;
        std::optional<pc::Message> m = pc::decode(r.payload, error);
        if (!m) {
          protocol_error(*q, error);
          return;
        }
        handle(*q, *m);
        break;
      }
      case workers::ReceiveStatus::would_block:
        return;
      case workers::ReceiveStatus::closed:
        // The process has exited (its pidfd will say so), or, for an
        // executable, closed fd 3: either way nothing more comes.
        q->control_open = false;
        q->outbox.clear();
        // A child whose spawner exited before reporting its pid: its pid will
        // never be known; the reaper ends it as an orphan.
        if (q->pid <= 0 && q->spawner == 0 && !q->exited) {
          q->evidence.start_error = "its spawner exited before reporting its pid";
          release_hold(*q);
          finish(q->id, reconcile_exit(siginfo_t{}, q->evidence));
        }
        return;
      case workers::ReceiveStatus::bad_message:
      case workers::ReceiveStatus::error:
        protocol_error(*q, r.error);
        return;
    }
  }
}

void ProcessHub::protocol_error(Proc& p, const std::string& why) {
  ++stats_.protocol_errors;
  log_.event(LogLevel::warn, "process_protocol_error")
      .num("process", p.id)
      .num("pid", p.pid)
      .str("error", why);
  if (!p.evidence.protocol_error) p.evidence.protocol_error = why;
  p.control_open = false;
  p.outbox.clear();
  kill(p);
}

// A process spawned by another is known by its pid only once its parent
// has reported it: until then the kill waits for the pid.
void ProcessHub::kill(Proc& p) {
  if (p.adopted_pidfd) {
    signal_adopted(p);  // its owner reaps and reports it
  } else if (p.pid > 0) {
    // A worker's group goes with it, as when its Service kills it.
    if (p.worker) reaper_.signal_group(p.pid, SIGKILL);
    reaper_.signal(p.pid, SIGKILL);
  } else
    p.kill_pending = true;
}

void ProcessHub::reply(Proc& p, const Value& tag, Value result, UniqueFd fd) {
  notify(p, tuple(pc::kReply, tag, std::move(result)), std::move(fd));
}

void ProcessHub::notify(Proc& p, const Value& term, UniqueFd fd) {
  if (!p.control_open || p.exited) {
    ++stats_.notices_dropped;
    return;
  }
  p.outbox.push_back(Outgoing{pc::encode(term), std::move(fd)});
  flush(p);
}

void ProcessHub::flush(Proc& p) {
  while (!p.outbox.empty() && !p.writing) {
    Outgoing& o = p.outbox.front();
    std::error_code ec = workers::send_datagram(p.control->native_handle(), o.payload, o.fd.get());
    if (!ec) {
      p.outbox.pop_front();
      continue;
    }
    if (ec == std::errc::resource_unavailable_try_again || ec == std::errc::operation_would_block) {
      // The process is not reading its control channel now: keep the rest, in order.
      p.writing = true;
      const uint32_t id = p.id;
      p.control->async_wait(asio::posix::stream_descriptor::wait_write,
                            [this, id](const boost::system::error_code& e) {
                              Proc* q = find(id);
                              if (e || !q) return;
                              q->writing = false;
                              flush(*q);
                            });
      return;
    }
    stats_.notices_dropped += p.outbox.size();
    p.outbox.clear();
    return;
  }
}

// --- requests ---

void ProcessHub::handle(Proc& p, const pc::Message& m) {
  const std::string_view name = m.name();
  const size_t n = m.size();
  if (name == pc::kExit && n == 1 && m[0].as_map()) {
    p.evidence.stated = *m[0].as_map();
  } else if (name == pc::kSpawned && n == 2) {
    do_spawned(p, m[0], m[1]);
  } else if (name == pc::kAdoptedExit && n == 4) {
    do_adopted_exit(p, m);
  } else if (name == pc::kSpawnFailed && n == 2) {
    Proc* c = live_proc(m[0]);
    if (!c || c->spawner != p.id)
      return protocol_error(p, "spawn_failed for a process it did not spawn");
    c->evidence.start_error = m[1].as_string() ? *m[1].as_string() : "clone failed";
    const uint32_t cid = c->id;
    release_hold(*c);
    finish(cid, reconcile_exit(siginfo_t{}, c->evidence));
  } else if (name == pc::kBadFrame && n == 2 && m[0].as_address() && m[1].as_string()) {
    // Only about a live peer it has a channel with (what it read came from
    // there); one that has exited since is already gone.
    Proc* sender = live_proc(m[0]);
    if (sender && p.peers.contains(sender->id))
      protocol_error(*sender, "a frame it sent to " + Value(address_of(p.id)).to_string() +
                                  " does not decode: " + *m[1].as_string());
  } else if (n >= 1 && !m[0].as_int()) {
    protocol_error(p, "request without a tag: " + m.term.to_string());
  } else if (name == pc::kSpawn && n == 3 && m[1].as_bool() && m[2].as_bool()) {
    do_spawn(p, m[0], *m[1].as_bool(), *m[2].as_bool());
  } else if (name == pc::kSpawnExecutable && n == 3 && m[1].as_list() && m[2].as_bool()) {
    do_spawn_port(p, m[0], m[1], Map{{"monitor", *m[2].as_bool()}});
  } else if (name == pc::kSpawnPort && n == 3 && m[1].as_list() && m[2].as_map()) {
    do_spawn_port(p, m[0], m[1], *m[2].as_map());
  } else if (name == pc::kAdopt && n == 2) {
    do_adopt(p, m[0], m[1]);
  } else if (name == pc::kConnect && n == 2) {
    do_connect(p, m[0], m[1]);
  } else if (name == pc::kMonitor && n == 2) {
    do_monitor(p, m[0], m[1]);
  } else if (name == pc::kDemonitor && n == 2) {
    do_demonitor(p, m[0], m[1]);
  } else if (name == pc::kLink && n == 2) {
    do_link(p, m[0], m[1]);
  } else if (name == pc::kUnlink && n == 2) {
    do_unlink(p, m[0], m[1]);
  } else if (name == pc::kTrapExits && n == 2 && m[1].as_bool()) {
    p.trap_exits = *m[1].as_bool();
    reply(p, m[0], true);
  } else if (name == pc::kRegister && n == 2 && m[1].as_string()) {
    const std::string& wanted = *m[1].as_string();
    // Names with a '/' are the workers' (service/replica).
    const bool ok =
        !wanted.empty() && wanted.find('/') == std::string::npos && !names_.contains(wanted);
    if (ok) {
      names_.emplace(wanted, p.id);
      p.names.push_back(wanted);
    }
    reply(p, m[0], ok);
  } else if (name == pc::kWhereis && n == 2 && m[1].as_string()) {
    auto it = names_.find(*m[1].as_string());
    reply(p, m[0], it == names_.end() ? Value() : Value(address_of(it->second)));
  } else {
    protocol_error(p, "unknown request: " + m.term.to_string());
  }
}

void ProcessHub::do_spawn(Proc& p, const Value& tag, bool link, bool monitor) {
  UniqueFd child_end;
  Proc* c = nullptr;
  try {
    c = &create(child_end);
  } catch (const std::system_error& e) {
    log_.event(LogLevel::error, "process_spawn_failed").str("error", e.what());
    return protocol_error(p, e.what());  // it cannot go on without its spawn; crash-only
  }
  c->spawner = p.id;
  c->held = true;
  reaper_.hold_unwatched();
  p.unreported.push_back(c->id);
  Value ref;
  if (link) {
    p.links.insert(c->id);
    c->links.insert(p.id);
  }
  if (monitor) ref = add_monitor(p, *c);
  reply(p, tag, tuple(address_of(c->id), static_cast<int64_t>(self_pid_), std::move(ref)),
        std::move(child_end));
}

void ProcessHub::do_spawned(Proc& p, const Value& address, const Value& pid) {
  Proc* c = live_proc(address);
  if (!c || c->spawner != p.id || c->pid > 0 || !pid.as_int() || *pid.as_int() <= 0)
    return protocol_error(p, "spawned: not a child it is spawning: " + address.to_string());
  const pid_t child = static_cast<pid_t>(*pid.as_int());
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  // Ours and not reaped yet (reaping is held until now), so the pid is the
  // child's: waitid on a process that is not our child fails with ECHILD.
  siginfo_t info{};
  if (!pidfd || reaper_.watching(child) ||
      ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &info,
               WEXITED | WNOHANG | WNOWAIT) != 0) {
    c->evidence.start_error = "the reported pid is not a child of the coordinator";
    const uint32_t cid = c->id;
    release_hold(*c);
    finish(cid, reconcile_exit(siginfo_t{}, c->evidence));
    return protocol_error(p, "spawned: pid " + std::to_string(child) + " is not its child");
  }
  watch(*c, child, std::move(pidfd));
}

void ProcessHub::do_adopt(Proc& p, const Value& tag, const Value& pid) {
  const std::optional<int64_t> n = pid.as_int();
  if (!n || *n <= 0 || *n > INT32_MAX) return protocol_error(p, "adopt: not a pid");
  const pid_t child = static_cast<pid_t>(*n);
  if (p.pid <= 0) {
    // A process just spawned: its spawner's `spawned` (on another channel)
    // may come after this. Answered once its pid is known (watch()).
    p.pending_adopts.emplace_back(tag, child);
    return;
  }
  for (uint32_t id : p.adopted)
    if (const Proc* known = find(id); known && known->pid == child) {
      reply(p, tag, Value(address_of(id)));  // asked twice: one process
      return;
    }
  // Its child, not reaped yet (it reports before it reaps): the pid is the
  // program's while we check, and the pidfd keeps naming it after.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  char state = 0;
  long parent = -1;
  if (!pidfd || !read_stat(child, state, parent) || parent != p.pid) {
    reply(p, tag, Value(pc::kNoproc));
    return;
  }
  auto a = std::make_unique<Proc>();
  a->id = next_id_++;
  a->pid = child;
  a->control_open = false;  // it speaks no protocol: notices to it are dropped
  a->owner = p.id;
  a->adopted_pidfd = std::move(pidfd);
  p.adopted.push_back(a->id);
  const uint32_t id = a->id;
  procs_.emplace(id, std::move(a));
  ++stats_.spawned;
  reply(p, tag, Value(address_of(id)));
}

void ProcessHub::do_adopted_exit(Proc& p, const pc::Message& m) {
  Proc* a = live_proc(m[0]);
  if (!a || a->owner != p.id || !m[1].as_bool() || !m[2].as_int() || !m[3].as_bool())
    return protocol_error(p, "adopted_exit: not a program it adopted: " + m[0].to_string());
  siginfo_t info{};
  info.si_code = *m[1].as_bool() ? CLD_EXITED : *m[3].as_bool() ? CLD_DUMPED : CLD_KILLED;
  info.si_status = static_cast<int>(*m[2].as_int());
  erase_value(p.adopted, a->id);
  finish(a->id, reconcile_exit(info, a->evidence));
}

// SIGKILL through its pidfd, then its process group if it leads one (a
// pipeline's later stages are in the first stage's group). Checked while
// the signal has just reached it: the pid is still its own then, unless its
// owner reaps it in between (a window of two system calls).
void ProcessHub::signal_adopted(Proc& a) {
  if (::syscall(SYS_pidfd_send_signal, a.adopted_pidfd.get(), SIGKILL, nullptr, 0) != 0) return;
  if (::getpgid(a.pid) == a.pid) ::kill(-a.pid, SIGKILL);
}

// Its owner has exited: the programs it adopted end with it (their
// process groups are SIGKILLed; the subreaper reaps them as orphans).
void ProcessHub::kill_adopted(Proc& owner) {
  std::vector<uint32_t> adopted = std::move(owner.adopted);
  for (uint32_t id : adopted) {
    Proc* a = find(id);
    if (!a || a->exited) continue;
    signal_adopted(*a);
    siginfo_t info{};
    info.si_code = CLD_KILLED;
    info.si_status = SIGKILL;
    Map reason = reconcile_exit(info, a->evidence);
    reason.insert_or_assign("detail", "its owner exited");
    finish(id, reason);
  }
}

Reference ProcessHub::add_monitor(Proc& watcher, Proc& target) {
  Reference r = make_ref();
  const uint64_t key = next_ref_ - 1;
  monitors_[key] = Monitor{watcher.id, target.id};
  watcher.monitoring.push_back(key);
  target.monitored_by.push_back(key);
  return r;
}

void ProcessHub::do_spawn_port(Proc& p, const Value& tag, const Value& argv, const Map& options) {
  ProcessSpec spec;
  for (const Value& a : *argv.as_list()) {
    if (!a.as_string()) return protocol_error(p, "spawn_port: argv is not strings");
    spec.argv.push_back(*a.as_string());
  }
  if (spec.argv.empty()) return protocol_error(p, "spawn_port: empty argv");
  bool link = false, monitor = false;
  for (const auto& [key, value] : options) {
    const std::string* k = key.as_string();
    const std::string* text = value.as_string();
    const List* items = value.as_list();
    if (k && *k == "link" && value.as_bool()) {
      link = *value.as_bool();
    } else if (k && *k == "monitor" && value.as_bool()) {
      monitor = *value.as_bool();
    } else if (k && *k == "cwd" && text) {
      spec.cwd = *text;
    } else if (k && *k == "env" && items) {
      for (const Value& e : *items) {
        const std::string* kv = e.as_string();
        if (!kv || kv->find('=') == std::string::npos || kv->front() == '=')
          return protocol_error(p, "spawn_port: env entries are \"KEY=VALUE\" strings");
        spec.env.push_back(*kv);
      }
    } else {
      return protocol_error(p, "spawn_port: unknown option " + key.to_string());
    }
  }
  UniqueFd child_end;
  Proc* c = nullptr;
  try {
    c = &create(child_end);
  } catch (const std::system_error& e) {
    return protocol_error(p, e.what());
  }
  const uint32_t cid = c->id;
  const Address address = address_of(cid);
  if (link) {
    p.links.insert(cid);
    c->links.insert(p.id);
  }
  reply(p, tag, tuple(address, monitor ? Value(add_monitor(p, *c)) : Value()));
  spec.pass_fds = {child_end.get()};
  // Last, so that the port's own variable wins over a same-named one in env.
  spec.env.push_back("OCCASIONAL_CONTROL_FD=3");
  notify(*c, tuple(pc::kHello, address, static_cast<int64_t>(self_pid_)));
  SpawnResult r = spawn_process(spec);
  child_end.reset();
  if (!r.ok()) {
    c->evidence.start_error = std::string(r.failed_call) + ": " + std::strerror(r.error);
    finish(cid, reconcile_exit(siginfo_t{}, c->evidence));
    return;
  }
  watch(*c, r.pid, std::move(r.pidfd));
}

void ProcessHub::do_connect(Proc& p, const Value& tag, const Value& address) {
  Proc* t = live_proc(address);
  // A worker that has never spoken may never read its channel: once a
  // notice to it waits (its buffer is full), new channels to it are
  // refused rather than held here, each with an fd.
  if (!t || t == &p || !t->control_open || (t->worker && !t->spoke && !t->outbox.empty())) {
    ++stats_.sends_dropped;
    return reply(p, tag, pc::kNoproc);
  }
  if (p.peers.contains(t->id)) return reply(p, tag, "ok");  // its notice came first
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    ++stats_.connect_failures;
    ++stats_.sends_dropped;
    log_.event(LogLevel::warn, "process_connect_failed")
        .str("error", std::string("socketpair(): ") + std::strerror(errno));
    return reply(p, tag, pc::kNoproc);
  }
  UniqueFd mine(fds[0]), theirs(fds[1]);
  ++stats_.channels;
  p.peers.insert(t->id);
  t->peers.insert(p.id);
  notify(*t, tuple(pc::kChannel, address_of(p.id)), std::move(theirs));
  reply(p, tag, "ok", std::move(mine));
}

void ProcessHub::do_monitor(Proc& p, const Value& tag, const Value& address) {
  Proc* t = live_proc(address);
  if (t) return reply(p, tag, add_monitor(p, *t));
  Reference r = make_ref();
  reply(p, tag, r);
  notify(p, tuple(pc::kDown, r, address, pc::reason_noproc()));
}

void ProcessHub::do_demonitor(Proc& p, const Value& tag, const Value& ref) {
  const Reference* r = ref.as_reference();
  if (r && r->node == node_ && r->creation == creation_ && r->size == 3) {
    const uint64_t key = uint64_t{r->words[0]} | uint64_t{r->words[1]} << 32;
    auto it = monitors_.find(key);
    if (it != monitors_.end() && it->second.watcher == p.id) {
      if (Proc* t = find(it->second.target)) erase_value(t->monitored_by, key);
      erase_value(p.monitoring, key);
      monitors_.erase(it);
    }
  }
  reply(p, tag, true);
}

void ProcessHub::do_link(Proc& p, const Value& tag, const Value& address) {
  Proc* t = live_proc(address);
  reply(p, tag, true);
  if (t == &p) return;
  if (t) {
    p.links.insert(t->id);
    t->links.insert(p.id);
    return;
  }
  // Erlang: linking to a process that is not there is an exit signal noproc.
  if (p.trap_exits) return notify(p, tuple(pc::kExitSignal, address, pc::reason_noproc()));
  const Address* a = address.as_address();
  p.evidence.linked_from = a ? *a : Address{};
  p.evidence.linked_reason = pc::reason_noproc();
  kill(p);
}

void ProcessHub::do_unlink(Proc& p, const Value& tag, const Value& address) {
  if (Proc* t = live_proc(address)) {
    t->links.erase(p.id);
    p.links.erase(t->id);
  }
  reply(p, tag, true);
}

// --- exits ---

void ProcessHub::kill_for_link(Proc& victim, uint32_t from, const Map& reason) {
  if (!victim.evidence.linked_from) {
    victim.evidence.linked_from = address_of(from);
    victim.evidence.linked_reason = reason;
  }
  kill(victim);
}

void ProcessHub::on_reaped(uint32_t id, const siginfo_t& info) {
  Proc* p = find(id);
  if (!p) return;
  // What it sent before it exited (its report, a spawned child's pid) may
  // still be unread: the pidfd and the socket wake us in either order.
  read_control(*p);
  p = find(id);
  if (!p) return;
  finish(id, reconcile_exit(info, p->evidence));
}

void ProcessHub::finish(uint32_t id, const Map& reason) {
  Proc* p = find(id);
  if (!p || p->exited) return;
  p->exited = true;
  const Address who = address_of(id);
  const Value who_value(who);
  const Value reason_value(reason);
  for (const std::string& n : p->names) names_.erase(n);
  for (uint64_t key : p->monitoring) {
    auto it = monitors_.find(key);
    if (it == monitors_.end()) continue;
    if (Proc* t = find(it->second.target)) erase_value(t->monitored_by, key);
    monitors_.erase(it);
  }
  for (uint64_t key : p->monitored_by) {
    auto it = monitors_.find(key);
    if (it == monitors_.end()) continue;
    if (Proc* w = find(it->second.watcher)) {
      erase_value(w->monitoring, key);
      Reference r;
      r.node = node_;
      r.creation = creation_;
      r.size = 3;
      r.words = {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32), 0, 0, 0};
      notify(*w, tuple(pc::kDown, std::move(r), who_value, reason_value));
    }
    monitors_.erase(it);
  }
  ++stats_.exits[std::string(pc::reason_kind(reason_value))];
  const bool abnormal = abnormal_exit(reason);
  for (uint32_t lid : p->links) {
    Proc* l = find(lid);
    if (!l || l->exited) continue;
    l->links.erase(id);
    if (l->trap_exits)
      notify(*l, tuple(pc::kExitSignal, who_value, reason_value));
    else if (abnormal)
      kill_for_link(*l, id, reason);
  }
  for (uint32_t peer : p->peers)
    if (Proc* q = find(peer)) q->peers.erase(id);
  kill_adopted(*p);
  // Children it spawned and never reported: see read_control's closed case.
  for (uint32_t cid : p->unreported) {
    if (Proc* c = find(cid)) {
      c->spawner = 0;
      if (c->held) {
        c->held = false;
        reaper_.release_unwatched();
      }
      if (!c->control_open && !c->exited) {
        c->evidence.start_error = "its spawner exited before reporting its pid";
        finish(cid, reconcile_exit(siginfo_t{}, c->evidence));
      }
    }
  }
  release_hold(*p);
  ++stats_.exited;
  auto node = procs_.extract(id);
  if (observer_) observer_(who, reason);
}

}  // namespace occasional::supervisor
