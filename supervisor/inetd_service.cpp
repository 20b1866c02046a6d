#include "supervisor/inetd_service.hpp"

#include <fcntl.h>
#include <signal.h>

#include "supervisor/spawner.hpp"

namespace occasional::supervisor {

InetdService::InetdService(boost::asio::io_context& io, InetdConfig config, ChildReaper& reaper,
                           Guardian& guardian, ServiceObserver& observer)
    : io_(io),
      config_(std::move(config)),
      reaper_(reaper),
      guardian_(guardian),
      observer_(observer) {
  for (int i = 0; i < config_.max_processes; ++i) slots_.push_back(std::make_unique<Slot>(io_));
}

void InetdService::start() {
  stopped_ = false;
}

InetdService::Launch InetdService::launch(int conn, const std::string& peer) {
  if (stopped_) return Launch::stopped;
  int slot = -1;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i]->pid < 0) {
      slot = static_cast<int>(i);
      break;
    }
  if (slot < 0) return Launch::at_cap;
  Slot& s = *slots_[static_cast<size_t>(slot)];
  s.started_wall = std::chrono::system_clock::now();
  s.started_mono = std::chrono::steady_clock::now();

  // The gateway accepts non-blocking; `cat` and friends expect blocking stdio.
  // The flag belongs to the open file, which our copy is about to let go of.
  const int flags = ::fcntl(conn, F_GETFL);
  if (flags >= 0) ::fcntl(conn, F_SETFL, flags & ~O_NONBLOCK);

  ProcessSpec spec = config_.process;
  spec.stdin_fd = conn;
  spec.stdout_fd = conn;
  spec.env.push_back("OCCASIONAL_SERVICE=" + config_.name);
  spec.env.push_back("OCCASIONAL_REPLICA=" + std::to_string(slot));
  if (const auto colon = peer.rfind(':'); colon != std::string::npos) {
    std::string address = peer.substr(0, colon);
    if (address.size() >= 2 && address.front() == '[')
      address = address.substr(1, address.size() - 2);
    spec.env.push_back("REMOTE_ADDR=" + address);
    spec.env.push_back("REMOTE_PORT=" + peer.substr(colon + 1));
  }
  SpawnResult result = spawn_process(spec);
  if (!result.ok()) {
    record_start_failure(slot, result.error, result.failed_call);
    return Launch::failed;
  }
  if (std::error_code ec =
          reaper_.watch(result.pid, std::move(result.pidfd),
                        [this, slot](const siginfo_t& info) { on_exit(slot, info); })) {
    record_start_failure(slot, ec.value(), "register_pidfd");
    return Launch::failed;
  }
  s.pid = result.pid;
  ++running_;
  guardian_.watch(s.pid);
  observer_.on_spawned(config_.name, slot, s.pid);
  return Launch::started;
}

std::vector<InetdService::Process> InetdService::processes() const {
  std::vector<Process> out;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i]->pid > 0)
      out.push_back({static_cast<int>(i), slots_[i]->pid, slots_[i]->started_mono});
  return out;
}

void InetdService::stop() {
  stopped_ = true;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    if (s.pid < 0) continue;
    const int slot = static_cast<int>(i);
    const pid_t pid = s.pid;
    observer_.on_stopping(config_.name, slot, pid);
    reaper_.signal_group(pid, SIGTERM);
    s.grace.expires_after(config_.grace);
    s.grace.async_wait([this, slot, pid](const boost::system::error_code& ec) {
      if (ec || slots_[static_cast<size_t>(slot)]->pid != pid) return;
      observer_.on_killed_at_grace(config_.name, slot, pid);
      reaper_.signal_group(pid, SIGKILL);
    });
  }
  if (idle()) observer_.on_idle(config_.name);
}

void InetdService::kill_all() {
  for (auto& s : slots_)
    // The reaper signals only a group whose leader it has not reaped.
    if (s->pid > 0) reaper_.signal_group(s->pid, SIGKILL);
}

void InetdService::on_exit(int slot, const siginfo_t& info) {
  Slot& s = *slots_[static_cast<size_t>(slot)];
  guardian_.forget(s.pid);
  ExitRecord record = process_exit_record(s.pid, info);
  s.pid = -1;
  s.grace.cancel();
  --running_;
  finish(slot, std::move(record));
  if (idle()) observer_.on_idle(config_.name);
}

void InetdService::record_start_failure(int slot, int error, const char* call) {
  finish(slot, start_failure_record(error, call));
}

void InetdService::finish(int slot, ExitRecord record) {
  const Slot& s = *slots_[static_cast<size_t>(slot)];
  finish_exit_record(record, config_.name, slot, s.started_wall, s.started_mono);
  observer_.on_exited(record);
}

}  // namespace occasional::supervisor
