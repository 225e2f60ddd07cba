#include "handle.h"

namespace rbdnative {

void Handle::Close() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (released_.load()) return;
  if (!stuck_.load()) Release();
  released_.store(true);
}

void Handle::MarkStuck() {
  stuck_.store(true);
  if (Handle* up = parent()) up->MarkStuck();
}

void Handle::CloseTree() {
  for (auto& child : LiveChildren()) child->CloseTree();
  Close();
}

void Handle::AddChild(const std::shared_ptr<Handle>& child) {
  std::lock_guard<std::mutex> lock(children_mu_);
  // Drop entries of children already gone so the list stays as small as the
  // set of open children.
  std::vector<std::weak_ptr<Handle>> kept;
  for (auto& weak : children_) {
    if (!weak.expired()) kept.push_back(std::move(weak));
  }
  kept.push_back(child);
  children_.swap(kept);
}

std::vector<std::shared_ptr<Handle>> Handle::LiveChildren() {
  std::lock_guard<std::mutex> lock(children_mu_);
  std::vector<std::shared_ptr<Handle>> live;
  for (auto& weak : children_) {
    auto child = weak.lock();
    if (child && child->IsOpen()) live.push_back(std::move(child));
  }
  return live;
}

size_t Handle::OpenChildren(HandleKind kind) {
  size_t count = 0;
  for (auto& child : LiveChildren()) {
    if (child->kind() == kind) ++count;
  }
  return count;
}

}  // namespace rbdnative
