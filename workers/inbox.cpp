#include "workers/inbox.hpp"

namespace occasional {

std::optional<Value> Inbox::take(const Match& match, size_t& from) {
  if (!match && from < messages_.size()) {
    // Any message: the first, taken without deque::erase's general path
    // (a stream of small values is dequeued at millions per second).
    std::optional<Value> out(std::move(messages_[from]));
    if (from == 0)
      messages_.pop_front();
    else
      messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(from));
    return out;
  }
  for (size_t i = from; i < messages_.size(); ++i) {
    if (!match || match(messages_[i])) {
      Value out = std::move(messages_[i]);
      messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(i));
      from = i;
      return out;
    }
  }
  from = messages_.size();
  return std::nullopt;
}

std::optional<Value> Inbox::receive(const Match& match, Deadline deadline,
                                    const WaitForMore& wait_for_more) {
  size_t from = 0;
  bool last_look = false;
  for (;;) {
    if (auto message = take(match, from)) return message;
    if (last_look) return std::nullopt;
    last_look = !wait_for_more(deadline);
  }
}

size_t Inbox::remove_if(const Match& match) {
  const size_t before = messages_.size();
  std::erase_if(messages_, [&](const Value& v) { return match(v); });
  return before - messages_.size();
}

std::vector<Value> Inbox::extract_if(const Match& match) {
  std::vector<Value> out;
  std::deque<Value> kept;
  for (Value& v : messages_) {
    if (match(v))
      out.push_back(std::move(v));
    else
      kept.push_back(std::move(v));
  }
  messages_.swap(kept);
  return out;
}

}  // namespace occasional
