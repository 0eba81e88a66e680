#include "engine/raft/read_only.h"

namespace flotilla::raft {

void ReadIndexQueue::Add(uint64_t ctx, ReplicaId from, Index index) {
  requests_.push_back(Request{ctx, from, index, 0});
  ++waiting_;
}

uint64_t ReadIndexQueue::StartRound() {
  ++last_round_;
  for (auto it = requests_.rbegin(); it != requests_.rend() && it->round == 0; ++it) {
    it->round = last_round_;
  }
  waiting_ = 0;
  return last_round_;
}

void ReadIndexQueue::Confirm(uint64_t round, std::vector<Request>* ready) {
  if (round > last_round_) return;  // a response to a round we never started
  if (round > confirmed_round_) confirmed_round_ = round;
  while (!requests_.empty() && requests_.front().round != 0 && requests_.front().round <= round) {
    ready->push_back(requests_.front());
    requests_.pop_front();
  }
}

void ReadIndexQueue::Reset(std::vector<Request>* dropped) {
  for (const Request& r : requests_) dropped->push_back(r);
  requests_.clear();
  waiting_ = 0;
  confirmed_round_ = last_round_;
}

}  // namespace flotilla::raft
