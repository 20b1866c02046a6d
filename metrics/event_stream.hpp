#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <string>
#include <string_view>

namespace occasional::metrics {

// The event log as the admin endpoint streams it (GET /v1/events): each
// line the coordinator logs, as one JSON object, goes to every subscriber,
// and the last `backlog` lines are kept for those who connect later.
// Subscribers are called on the loop, in publish(): they must only take
// the line (queue it), never block or publish in turn.
class EventStream {
 public:
  using Subscriber = std::function<void(std::string_view line)>;
  using Handle = std::list<Subscriber>::iterator;

  static constexpr size_t kBacklog = 256;

  explicit EventStream(size_t backlog = kBacklog) : capacity_(backlog) {}
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // `line`: one JSON object, with or without its '\n' (kept without).
  void publish(std::string_view line);
  // Oldest first.
  const std::deque<std::string>& backlog() const { return backlog_; }
  uint64_t published() const { return published_; }

  Handle subscribe(Subscriber s) { return subscribers_.insert(subscribers_.end(), std::move(s)); }
  void unsubscribe(Handle h) { subscribers_.erase(h); }

 private:
  size_t capacity_;
  std::deque<std::string> backlog_;
  std::list<Subscriber> subscribers_;
  uint64_t published_ = 0;
};

}  // namespace occasional::metrics
