#include "metrics/event_stream.hpp"

namespace occasional::metrics {

void EventStream::publish(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  ++published_;
  if (capacity_ > 0) {
    if (backlog_.size() == capacity_) backlog_.pop_front();
    backlog_.emplace_back(line);
  }
  for (Subscriber& s : subscribers_) s(line);
}

}  // namespace occasional::metrics
