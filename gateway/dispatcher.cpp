#include "gateway/dispatcher.hpp"

namespace occasional::gateway {

void Dispatcher::add_service(boost::asio::io_context& io, const std::string& service,
                             BalancerConfig config, const supervisor::EventLog& log) {
  balancers_[service] = std::make_unique<Balancer>(io, service, config, stats_, log);
}

void Dispatcher::add_inetd(boost::asio::io_context& io, supervisor::InetdService& service,
                           QueueConfig queue) {
  inetd_[service.name()] = std::make_unique<InetdLauncher>(io, service, queue, stats_);
}

Balancer* Dispatcher::find(const std::string& service) {
  auto it = balancers_.find(service);
  return it == balancers_.end() ? nullptr : it->second.get();
}

bool Dispatcher::idle() const {
  for (const auto& [name, b] : balancers_)
    if (!b->idle()) return false;
  for (const auto& [name, l] : inetd_)
    if (l->queue().size() > 0) return false;
  return true;
}

const PendingQueue* Dispatcher::queue(const std::string& service) {
  if (Balancer* b = find(service)) return &b->queue();
  if (auto it = inetd_.find(service); it != inetd_.end()) return &it->second->queue();
  return nullptr;
}

void Dispatcher::on_queue_room(const std::function<void()>& f) {
  for (auto& [name, b] : balancers_) b->queue().on_room(f);
  for (auto& [name, l] : inetd_) l->queue().on_room(f);
}

void Dispatcher::dispatch(const std::string& service, UniqueFd fd, workers::ConnHeader header) {
  if (Balancer* b = find(service)) {
    b->dispatch(std::move(fd), std::move(header));
  } else if (auto it = inetd_.find(service); it != inetd_.end()) {
    it->second->dispatch(std::move(fd), std::move(header));
  } else {
    stats_.reject("no_service", header.listener);
  }
}

void Dispatcher::begin_burst() {
  for (auto& [name, b] : balancers_) b->begin_burst();
}

void Dispatcher::end_burst() {
  for (auto& [name, b] : balancers_) b->end_burst();
}

void Dispatcher::close_queues() {
  for (auto& [name, b] : balancers_) b->close_queue();
  for (auto& [name, l] : inetd_) l->close_queue();
}

void Dispatcher::on_ready(const std::string& service, int replica, supervisor::WorkerLink* link) {
  if (Balancer* b = find(service); b && link) b->add(replica, link);
}

void Dispatcher::on_unready(const std::string& service, int replica) {
  if (Balancer* b = find(service)) b->remove(replica);
}

void Dispatcher::on_conn_closed(const std::string& service, int replica, uint64_t) {
  if (Balancer* b = find(service)) b->on_closed(replica);
}

void Dispatcher::on_exited(const supervisor::ExitRecord& record) {
  if (Balancer* b = find(record.service)) b->remove(record.replica);
  if (auto it = inetd_.find(record.service); it != inetd_.end()) it->second->on_exited();
}

}  // namespace occasional::gateway
