#include "transfer.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "args.h"
#include "diff.h"
#include "diff_prefetch.h"
#include "errors.h"
#include "image.h"
#include "worker.h"
#include "zero_runs.h"

namespace rbdnative {

struct TransferJob::Op {
  Op(uint64_t offset, uint64_t length) : offset(offset), length(length) {}
  uint64_t offset;
  // Bytes of its buffer (the pieces' lengths added up), or of its hole.
  uint64_t length;
  char* buffer = nullptr;
  // Extents read into the buffer back to back: offset, length.
  std::vector<std::pair<uint64_t, uint64_t>> pieces;
  // What is written from the buffer, when not the pieces themselves (each
  // lies inside one piece); a hash-only op writes nothing.
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  bool write_pieces = true;
  SnapshotReader::Results direct;
  // Reads, then writes/zeroes, still outstanding for this op.
  int reads = 0;
  int pending = 0;
  bool read_failed = false;
  bool finished = false;
  // With deliver: read (or a hole), waiting for the ops before it.
  bool ready = false;
  // With an inlet: the piece this op writes (or zeroes).
  std::optional<Given> given;
};

namespace {

// How long a connection that fenced itself stays blocklisted: Ceph's own
// default for `osd blocklist add`, long past anything it could wake up from.
constexpr uint32_t kFenceSeconds = 3600;

std::string Describe(const char* what, uint64_t offset, uint64_t length) {
  return std::string(what) + " of " + std::to_string(length) + " bytes at offset " +
         std::to_string(offset);
}

}  // namespace

TransferJob::TransferJob(std::shared_ptr<ImageHandle> source,
                         std::shared_ptr<ImageHandle> target,
                         std::shared_ptr<ImageHandle> listed, TransferPlan plan,
                         CancelFlag cancel, std::shared_ptr<OutletState> outlet,
                         std::shared_ptr<InletState> inlet)
    : source_(std::move(source)),
      target_(std::move(target)),
      listed_(std::move(listed)),
      plan_(std::move(plan)),
      cancel_(std::move(cancel)),
      outlet_(std::move(outlet)),
      inlet_(std::move(inlet)),
      buffers_(std::make_shared<BufferPool>(plan_.io_size)) {}

TransferJob::~TransferJob() = default;

void TransferJob::OnComplete(rbd_completion_t c, void* arg) {
  auto* done = static_cast<Completion*>(arg);
  done->rc = rbd_aio_get_return_value(c);
  rbd_aio_release(c);
  done->job->Deliver(done);
}

void TransferJob::OnDirectComplete(rados_completion_t c, void* arg) {
  auto* done = static_cast<Completion*>(arg);
  done->rc = rados_aio_get_return_value(c);
  rados_aio_release(c);
  done->job->Deliver(done);
}

void TransferJob::Deliver(Completion* done) {
  // Notified under the lock: once it is released the job thread may see
  // this completion, finish, and free the job, so nothing here may touch
  // the job after that.
  std::lock_guard<std::mutex> lock(mu_);
  completed_.push_back(done);
  cv_.notify_one();
}

bool TransferJob::Stopping() const { return error_ != 0 || cancel_->load(); }

void TransferJob::Fail(int rc, std::string message) {
  if (error_ != 0) return;  // the first failure is the one worth reporting
  error_ = rc;
  message_ = std::move(message);
}

char* TransferJob::AcquireBuffer(uint64_t length) {
  // Full-size buffers are reused; smaller reads get a buffer of their own
  // size, so many small reads in flight do not each pin a full-size one.
  if (length != plan_.io_size) return static_cast<char*>(std::malloc(length));
  return buffers_->Acquire();
}

void TransferJob::ReleaseBuffer(char* buffer, uint64_t length) {
  if (!buffer) return;
  if (length != plan_.io_size) {
    std::free(buffer);
  } else {
    buffers_->Release(buffer);
  }
}

TransferProgress TransferJob::Progress() {
  TransferProgress p;
  // A hash-only op for a block below the ops before it may be the oldest.
  uint64_t done = order_.empty() ? position_ : order_.front()->offset;
  // Extents gathered into the batch are below position_ and not read yet:
  // a progress record claiming them would let a resumed run skip them.
  if (!batch_.pieces.empty()) done = std::min(done, batch_.pieces.front().first);
  reported_done_ = std::max(reported_done_, done);
  p.done = reported_done_;
  const DigestTable& digests = plan_.digests;
  if (digests.enabled()) {
    // A block is final once every op at or below its start is done; a
    // hash-only op is only ever issued for a block reaching past done.
    uint64_t final_blocks = p.done >= plan_.length ? digests.count() : digests.BlockOf(p.done);
    if (final_blocks > reported_blocks_) {
      p.digests_from = reported_blocks_;
      p.digests.assign(digests.entries().begin() + reported_blocks_, digests.entries().begin() + final_blocks);
      reported_blocks_ = final_blocks;
    }
  }
  p.total = plan_.length;
  p.bytes_read = stats_.bytes_read;
  return p;
}

void TransferJob::FinishOp(Op* op) {
  if (op->buffer) {
    ReleaseBuffer(op->buffer, op->length);
    in_flight_bytes_ -= op->length;
  }
  op->buffer = nullptr;
  if (op->given) released_.push_back(*op->given);
  op->finished = true;
  --in_flight_;
  PopDone();
}

void TransferJob::PopDone() {
  std::vector<Delivered> delivered;
  while (!order_.empty() && (order_.front()->finished || order_.front()->ready)) {
    Op* op = order_.front();
    order_.pop_front();
    if (op->ready) {
      --in_flight_;
      in_flight_bytes_ -= op->buffer ? op->length : 0;
      if (Stopping()) {
        ReleaseBuffer(op->buffer, op->length);
      } else {
        Delivered piece;
        piece.offset = op->offset;
        piece.length = op->length;
        piece.pieces = std::move(op->pieces);
        if (plan_.zero_runs && op->buffer) {
          uint64_t at = 0;
          for (const auto& [offset, length] : piece.pieces) {
            for (const auto& [start, end] : FindZeroRuns(op->buffer + at, length, plan_.min_zero_run)) {
              piece.zero_runs.emplace_back(at + start, at + end);
            }
            at += length;
          }
        }
        ++handed_ops_;
        handed_bytes_ += op->buffer ? op->length : 0;
        piece.buffer = op->buffer;
        if (op->buffer && op->length == plan_.io_size) piece.pool = buffers_;
        delivered.push_back(std::move(piece));
      }
    }
    delete op;
  }
  if (!delivered.empty()) (*deliver_)(std::move(delivered));
}

void TransferJob::IssueDeliveredHole(uint64_t offset, uint64_t length) {
  WaitForRoom(nullptr, 0);
  if (Stopping()) return;
  auto* op = new Op(offset, length);
  op->ready = true;
  order_.push_back(op);
  ++in_flight_;
  PopDone();
}

void TransferJob::CountTaken() {
  std::lock_guard<std::mutex> lock(outlet_->mu);
  handed_ops_ -= std::min(handed_ops_, outlet_->taken_ops);
  handed_bytes_ -= std::min(handed_bytes_, outlet_->taken_bytes);
  outlet_->taken_ops = 0;
  outlet_->taken_bytes = 0;
}

void TransferJob::IssueReads(rbd_image_t source, Op* op) {
  if (reader_) {
    std::vector<SnapshotReader::Extent> extents;
    uint64_t at = 0;
    for (const auto& [offset, length] : op->pieces) {
      extents.push_back({offset, length, op->buffer + at});
      at += length;
    }
    auto* done = new Completion{this, op, Kind::kRead, op->offset, op->length};
    done->direct = true;
    rados_completion_t c;
    int rc = rados_aio_create_completion2(done, &TransferJob::OnDirectComplete, &c);
    if (rc >= 0) {
      rc = reader_->Read(std::move(extents), &op->direct, c);
      if (rc < 0) rados_aio_release(c);
    }
    if (rc < 0) {
      Fail(rc, Describe("read from the source's objects", op->offset, op->length) + " could not start");
      delete done;
      return;
    }
    ++stats_.ops;
    ++stats_.object_reads;
    ++reads_pending_;
    ++op->reads;
    return;
  }
  uint64_t at = 0;
  for (const auto& [offset, length] : op->pieces) {
    auto* done = new Completion{this, op, Kind::kRead, offset, length};
    char* into = op->buffer + at;
    at += length;
    if (!StartAio(done, "read from the source", [&](rbd_completion_t c) {
          return rbd_aio_read2(source, offset, length, into, c, 0);
        })) {
      return;
    }
    ++op->reads;
  }
}

void TransferJob::IssueBatch(rbd_image_t source, rbd_image_t target) {
  if (batch_.pieces.empty()) return;
  auto pieces = std::move(batch_.pieces);
  auto writes = std::move(batch_.writes);
  batch_.pieces.clear();
  batch_.writes.clear();
  uint64_t bytes = 0;
  for (const auto& piece : pieces) bytes += piece.second;
  WaitForRoom(target, bytes);
  if (Stopping()) return;
  auto* op = new Op(pieces.front().first, bytes);
  op->pieces = std::move(pieces);
  if (plan_.digests.enabled()) {
    op->writes = std::move(writes);
    op->write_pieces = false;
  }
  op->buffer = AcquireBuffer(bytes);
  if (!op->buffer) {
    delete op;
    Fail(-ENOMEM, "cannot allocate a transfer buffer");
    return;
  }
  in_flight_bytes_ += bytes;
  order_.push_back(op);
  ++in_flight_;
  IssueReads(source, op);
  if (op->reads == 0) FinishOp(op);
}

bool TransferJob::StartAio(Completion* done, const char* what,
                           const std::function<int(rbd_completion_t)>& submit) {
  rbd_completion_t c;
  int rc = rbd_aio_create_completion(done, &TransferJob::OnComplete, &c);
  if (rc >= 0) {
    rc = submit(c);
    if (rc < 0) rbd_aio_release(c);
  }
  if (rc < 0) {
    Fail(rc, Describe(what, done->offset, done->length) + " could not start");
    delete done;
    return false;
  }
  ++stats_.ops;
  if (done->kind == Kind::kRead) {
    ++reads_pending_;
  } else {
    ++writes_pending_;
  }
  return true;
}

void TransferJob::IssueWrite(rbd_image_t target, Op* op, uint64_t offset,
                             uint64_t length, const char* data) {
  auto* done = new Completion{this, op, Kind::kWrite, offset, length};
  if (StartAio(done, "write to the target", [&](rbd_completion_t c) {
        return rbd_aio_write2(target, offset, length, data, c, 0);
      })) {
    ++op->pending;
  }
}

void TransferJob::IssueZero(rbd_image_t target, Op* op, uint64_t offset, uint64_t length) {
  auto* done = new Completion{this, op, Kind::kZero, offset, length};
  // write-zeroes, not discard: librbd may skip partial-object discards,
  // which would leave old bytes behind.
  if (StartAio(done, "write-zeroes on the target", [&](rbd_completion_t c) {
        return rbd_aio_write_zeroes(target, offset, length, c, 0, 0);
      })) {
    ++op->pending;
  }
}

void TransferJob::IssueHole(rbd_image_t source, rbd_image_t target, uint64_t offset, uint64_t length) {
  DigestTable& digests = plan_.digests;
  // A whole-history transfer's table starts out all zero digests, and a
  // hole's partial blocks are zero or read whole with their data: nothing
  // to do. Otherwise whole blocks are zero now, and a partial one is read.
  if (digests.enabled() && plan_.from_snapshot) {
    uint64_t end = offset + length;
    uint64_t first = digests.BlockOf(offset);
    uint64_t last = digests.BlockOf(end - 1);
    for (uint64_t index = first; index <= last; ++index) {
      uint64_t start = digests.BlockStart(index);
      if (start >= offset && start + digests.BlockLength(index) <= end) {
        digests.SetZero(index);
      } else if (start + digests.BlockLength(index) > hashed_end_) {
        IssueHashOnly(source, target, index);
      }
    }
  }
  if (target == nullptr) {
    if (plan_.deliver) IssueDeliveredHole(offset, length);
    return;
  }
  if (plan_.target_is_zero) {
    stats_.bytes_skipped += length;
    return;
  }
  // Zeroing carries no data, so one op covers the whole extent.
  WaitForRoom(target, 0);
  if (Stopping()) return;
  auto* op = new Op(offset, length);
  order_.push_back(op);
  ++in_flight_;
  IssueZero(target, op, offset, length);
  if (op->pending == 0) FinishOp(op);
}

void TransferJob::IssueHashOnly(rbd_image_t source, rbd_image_t target, uint64_t index) {
  // A batch of the block alone with nothing to write: with digests on, a
  // batch's op writes only its writes.
  IssueBatch(source, target);
  const DigestTable& digests = plan_.digests;
  batch_.pieces.emplace_back(digests.BlockStart(index), digests.BlockLength(index));
  IssueBatch(source, target);
}

void TransferJob::HashPieces(Op* op) {
  DigestTable& digests = plan_.digests;
  uint64_t at = 0;
  for (const auto& [offset, length] : op->pieces) {
    // Pieces start on block boundaries and end on one or at the image's end.
    for (uint64_t done = 0; done < length;) {
      uint64_t index = digests.BlockOf(offset + done);
      digests.Hash(index, op->buffer + at + done);
      ++stats_.blocks_hashed;
      done += digests.BlockLength(index);
    }
    at += length;
  }
}

namespace {

// Adds [start, end) to pieces in offset order, into the last one when it
// overlaps it or starts at most gap bytes after it.
void AddPiece(std::vector<std::pair<uint64_t, uint64_t>>* pieces, uint64_t start, uint64_t end, uint64_t gap) {
  if (!pieces->empty()) {
    auto& last = pieces->back();
    if (start <= last.first + last.second + gap) {
      last.second = std::max(last.first + last.second, end) - last.first;
      return;
    }
  }
  pieces->emplace_back(start, end - start);
}

}  // namespace

void TransferJob::AddData(rbd_image_t source, rbd_image_t target, uint64_t offset, uint64_t length) {
  const DigestTable& digests = plan_.digests;
  uint64_t end = offset + length;
  while (offset < end && !Stopping()) {
    // Pieces end on io_size boundaries so that they line up with objects.
    uint64_t block = offset / plan_.io_size;
    uint64_t piece_end = std::min(end, (block + 1) * plan_.io_size);
    if (!batch_.pieces.empty() && batch_.block != block) IssueBatch(source, target);
    batch_.block = block;
    if (digests.enabled()) {
      // Whole digest blocks are read (they lie in the io_size block, whose
      // size they divide); the unchanged bytes around the extent are read
      // only to be hashed, and not written.
      AddPiece(&batch_.writes, offset, piece_end, plan_.merge_gap);
      uint64_t first = digests.BlockOf(offset);
      uint64_t last = digests.BlockOf(piece_end - 1);
      uint64_t read_end = digests.BlockStart(last) + digests.BlockLength(last);
      AddPiece(&batch_.pieces, digests.BlockStart(first), read_end, plan_.merge_gap);
      hashed_end_ = std::max(hashed_end_, read_end);
    } else if (plan_.align != 0) {
      // Whole blocks, which lie in the io_size block (align divides it).
      uint64_t start = offset - offset % plan_.align;
      uint64_t stop = std::min(plan_.length, (piece_end + plan_.align - 1) / plan_.align * plan_.align);
      AddPiece(&batch_.pieces, start, stop, plan_.merge_gap);
    } else {
      AddPiece(&batch_.pieces, offset, piece_end, plan_.merge_gap);
    }
    offset = piece_end;
  }
}

void TransferJob::Handle(rbd_image_t target, Completion* done) {
  Op* op = done->op;
  if (done->kind == Kind::kRead) {
    --reads_pending_;
    --op->reads;
    if (done->direct) {
      int rc = SnapshotReader::Finish(&op->direct, static_cast<int>(done->rc));
      if (rc < 0) {
        Fail(rc, Describe("read from the source's objects", done->offset, done->length) + " failed: " +
                     std::strerror(-rc));
        op->read_failed = true;
      }
    } else if (done->rc < 0 || static_cast<uint64_t>(done->rc) != done->length) {
      Fail(done->rc < 0 ? static_cast<int>(done->rc) : -EIO,
           Describe("read from the source", done->offset, done->length) + " failed" +
               (done->rc < 0 ? std::string(": ") + std::strerror(static_cast<int>(-done->rc))
                             : std::string(": short read")));
      op->read_failed = true;
    }
    if (!op->read_failed) stats_.bytes_read += done->length;
    // The buffer is librbd's until every read of it has completed.
    if (op->reads > 0) return;
    if (plan_.deliver && !op->read_failed && !Stopping()) {
      op->ready = true;
      PopDone();
      return;
    }
    if (!op->read_failed && !Stopping()) {
      if (plan_.digests.enabled()) HashPieces(op);
      uint64_t at = 0;
      if (target == nullptr) {
        // A job that only hashes.
      } else if (op->write_pieces) {
        for (const auto& [offset, length] : op->pieces) {
          WriteRuns(target, op, offset, length, op->buffer + at);
          at += length;
        }
      } else {
        // Both lists are in offset order and each write lies in one piece.
        size_t piece = 0;
        for (const auto& [offset, length] : op->writes) {
          while (offset >= op->pieces[piece].first + op->pieces[piece].second) {
            at += op->pieces[piece].second;
            ++piece;
          }
          WriteRuns(target, op, offset, length, op->buffer + at + (offset - op->pieces[piece].first));
        }
      }
    }
    if (op->pending == 0) FinishOp(op);
    return;
  }
  --writes_pending_;
  if (done->rc < 0) {
    const char* what = done->kind == Kind::kWrite ? "write to the target" : "write-zeroes on the target";
    Fail(static_cast<int>(done->rc), Describe(what, done->offset, done->length) + " failed: " +
                                         std::strerror(static_cast<int>(-done->rc)));
  } else if (done->kind == Kind::kWrite) {
    stats_.bytes_written += done->length;
  } else {
    stats_.bytes_zeroed += done->length;
  }
  if (--op->pending == 0) FinishOp(op);
}

void TransferJob::WriteRuns(rbd_image_t target, Op* op, uint64_t offset, uint64_t length, char* data) {
  // Data runs are written from the read buffer itself; zero runs become
  // write-zeroes, or nothing on a target that already reads as zeros.
  uint64_t data_start = 0;
  for (const auto& [zero_start, zero_end] : FindZeroRuns(data, length, plan_.min_zero_run)) {
    if (zero_start > data_start) {
      IssueWrite(target, op, offset + data_start, zero_start - data_start, data + data_start);
    }
    if (plan_.target_is_zero) {
      stats_.bytes_skipped += zero_end - zero_start;
    } else {
      IssueZero(target, op, offset + zero_start, zero_end - zero_start);
    }
    data_start = zero_end;
  }
  if (length > data_start) {
    IssueWrite(target, op, offset + data_start, length - data_start, data + data_start);
  }
}

void TransferJob::WakeUp() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void TransferJob::HandleCompleted(rbd_image_t target) {
  std::deque<Completion*> batch;
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Wake up now and then even without completions so a cancel is seen.
    cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return !completed_.empty() || woken_; });
    woken_ = false;
    batch.swap(completed_);
  }
  for (Completion* done : batch) {
    Handle(target, done);
    delete done;
  }
  if (outlet_) CountTaken();
  if (inlet_) ReleaseGiven();
}

void TransferJob::WaitForRoom(rbd_image_t target, uint64_t bytes) {
  // A stopping job issues nothing more, so it need not wait for room (its
  // callers check Stopping() next); WaitAll bounds the rest.
  // Delivered pieces JavaScript has not taken yet hold memory too, and
  // the buffers they were read into are kept for the next reads: each
  // side gets half (plan.memory). A full transfer with memory 16 MiB and
  // a slow consumer: RSS grew by 86-139 MiB with the whole budget for
  // both, 46 MiB with half (53 MiB through JavaScript reads), and a fast
  // one lost nothing that the machine's noise showed.
  uint64_t budget = plan_.deliver ? plan_.memory / 2 : plan_.memory;
  while (!Stopping() && (in_flight_ + handed_ops_ >= plan_.window ||
                         (in_flight_ + handed_ops_ > 0 &&
                          in_flight_bytes_ + handed_bytes_ + bytes > budget))) {
    if (plan_.deliver && in_flight_ == 0) TrimWhileWaiting();
    HandleCompleted(target);
  }
}

void TransferJob::TrimWhileWaiting() {
  // Only here, where the job waits for a slow consumer: memory given back
  // is faulted in again by the next reads (slow in this project's VMs; a
  // trim after every 8 pieces made a 1 GiB export to a fast consumer take
  // 2.4-2.7 s instead of 1.1-1.4 s).
  auto now = std::chrono::steady_clock::now();
  if (now - last_trim_ < std::chrono::milliseconds(200)) return;
  last_trim_ = now;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

void TransferJob::WaitAll(rbd_image_t target) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  while (in_flight_ > 0) {
    if (Stopping()) {
      auto now = std::chrono::steady_clock::now();
      if (!deadline) {
        deadline = now + std::chrono::milliseconds(plan_.drain_ms);
      } else if (now >= *deadline) {
        Abandon();
        return;
      }
    }
    HandleCompleted(target);
    // The last window of writes can take long (a slow or throttled
    // target): its progress is reported, and so recorded, too.
    MaybeReport();
  }
}

void TransferJob::Abandon() {
  abandoned_ = true;
  std::string stuck;
  if (reads_pending_ > 0) {
    source_->MarkStuck();
    stuck += std::to_string(reads_pending_) + " read(s) from the source";
  }
  if (writes_pending_ > 0) {
    target_->MarkStuck();
    stuck += std::string(stuck.empty() ? "" : " and ") + std::to_string(writes_pending_) +
             " write(s) to the target";
  }
  std::string what = stuck + " did not complete within " + std::to_string(plan_.drain_ms) +
                     " ms after the transfer stopped (librbd keeps them queued: another client may hold the "
                     "image's exclusive lock, or this client was blocklisted); the image is left open, "
                     "its handle cannot be closed before the process exits";
  if (writes_pending_ > 0) what += "; " + FenceSelf();
  if (error_ == 0) {
    Fail(-ETIMEDOUT, what);
  } else {
    message_ += "; then " + what;
  }
}

std::string TransferJob::FenceSelf() {
  // A write librbd still holds would land whenever this client gets the
  // image's exclusive lock back, over what another client (a retry) wrote
  // there meanwhile. Blocklisted, this connection never writes again.
  std::string message;
  std::string address;
  int rc = WithHandle(target_->pool()->cluster(), "cluster", message, [&](rados_t c) {
    char* addrs = nullptr;
    int r = rados_getaddrs(c, &addrs);
    if (r < 0) return r;
    address = addrs;
    std::free(addrs);
    return rados_blocklist_add(c, address.data(), kFenceSeconds);
  });
  if (rc < 0) {
    return "fencing this connection so that they can never land failed (" + std::string(std::strerror(-rc)) +
           "): close it and end the process before anything else writes to that image";
  }
  return "this connection fenced itself (blocklisted its address " + address +
         " for an hour) so that they can never land: connect again";
}

int TransferJob::Transfer(rbd_image_t source, rbd_image_t target, rbd_image_t listed,
                          const std::function<void(const TransferProgress&)>& report) {
  auto started = std::chrono::steady_clock::now();
  report_ = &report;
  last_report_ = started;
  position_ = reported_done_ = hashed_end_ = plan_.start;
  if (plan_.digests.enabled()) reported_blocks_ = plan_.digests.BlockOf(plan_.start);
  DiffPrefetcher diffs(listed, plan_.from_snapshot, plan_.start, plan_.no_listing ? 0 : plan_.length,
                       plan_.first_step == 0 ? plan_.step : plan_.first_step, plan_.step, plan_.whole_object,
                       [this] { WakeUp(); });
  for (uint64_t index : plan_.extra_blocks) {
    if (Stopping()) break;
    IssueHashOnly(source, target, index);
  }
  while (!Stopping()) {
    DiffPrefetcher::Range range;
    DiffPrefetcher::State state = diffs.TryTake(&range);
    if (state == DiffPrefetcher::State::kDone) break;
    if (state == DiffPrefetcher::State::kFailed) {
      Fail(diffs.error(), diffs.message());
      break;
    }
    if (state == DiffPrefetcher::State::kPending) {
      // Moves data (or waits a moment) until the next range is listed.
      HandleCompleted(target);
      continue;
    }
    const ExtentList& extents = range.extents;
    uint64_t range_end = range.start + range.length;
    uint64_t cursor = range.start;
    for (size_t i = 0; i < extents.size() && !Stopping(); ++i) {
      uint64_t offset = extents.offset(i);
      uint64_t length = extents.length(i);
      bool exists = plan_.read_every_extent || extents.exists[i] != 0;
      // Holes go after the data below them, so ops stay in offset order.
      if (!exists || (plan_.zero_gaps && offset > cursor)) IssueBatch(source, target);
      if (plan_.zero_gaps && offset > cursor) IssueHole(source, target, cursor, offset - cursor);
      ++stats_.extents;
      if (exists) {
        AddData(source, target, offset, length);
      } else {
        IssueHole(source, target, offset, length);
      }
      cursor = offset + length;
      position_ = cursor;
      MaybeReport();
    }
    IssueBatch(source, target);
    if (plan_.zero_gaps && cursor < range_end && !Stopping()) IssueHole(source, target, cursor, range_end - cursor);
    position_ = range_end;
  }
  diffs.Stop();
  Conclude(target, started);
  report_ = nullptr;
  if (error_ == 0) report(Progress());
  return error_;
}

int TransferJob::Accept(rbd_image_t target) {
  auto started = std::chrono::steady_clock::now();
  while (!Stopping()) {
    std::optional<Given> piece;
    bool ended = false;
    {
      std::lock_guard<std::mutex> lock(inlet_->mu);
      if (!inlet_->queue.empty()) {
        piece = inlet_->queue.front();
        inlet_->queue.pop_front();
      }
      ended = inlet_->ended;
    }
    if (piece) {
      AcceptPiece(target, *piece);
    } else if (ended) {
      break;
    } else {
      // Writes (or waits a moment) until JavaScript gives more.
      HandleCompleted(target);
    }
  }
  Conclude(target, started);
  return error_;
}

void TransferJob::Conclude(rbd_image_t target, std::chrono::steady_clock::time_point started) {
  WaitAll(target);
  if (error_ == 0 && cancel_->load()) Fail(-ECANCELED, "transfer cancelled");
  if (error_ == 0 && target != nullptr) {
    int rc = rbd_flush(target);
    if (rc < 0) Fail(rc, std::string("flush of the target failed: ") + std::strerror(-rc));
  }
  stats_.elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
}

bool TransferJob::OverlapsInFlight(uint64_t offset, uint64_t length) const {
  for (const Op* op : order_) {
    if (!op->finished && op->offset < offset + length && offset < op->offset + op->length) return true;
  }
  return false;
}

void TransferJob::AcceptPiece(rbd_image_t target, const Given& piece) {
  // Two writes of one range in flight at once land in either order; the
  // streams written this way rarely overlap (rbd export-diff's never do).
  while (!Stopping() && OverlapsInFlight(piece.offset, piece.length)) HandleCompleted(target);
  // JavaScript gives no more than the window holds; the wait is for a
  // piece given just as a stopped job's ops were being counted off.
  WaitForRoom(target, 0);
  if (Stopping()) {
    released_.push_back(piece);
    return;
  }
  ++stats_.extents;
  if (piece.data == nullptr && plan_.target_is_zero) {
    stats_.bytes_skipped += piece.length;
    released_.push_back(piece);
    return;
  }
  auto* op = new Op(piece.offset, piece.length);
  op->given = piece;
  order_.push_back(op);
  ++in_flight_;
  if (piece.data != nullptr) {
    IssueWrite(target, op, piece.offset, piece.length, piece.data);
  } else {
    IssueZero(target, op, piece.offset, piece.length);
  }
  if (op->pending == 0) FinishOp(op);
}

void TransferJob::ReleaseGiven() {
  if (released_.empty()) return;
  (*release_)(std::move(released_));
  released_.clear();
}

void TransferJob::MaybeReport() {
  // After a failure or a cancel, bytes below the cursor may never have
  // been written: no more reports.
  if (report_ == nullptr || Stopping()) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_report_ <= std::chrono::milliseconds(100)) return;
  last_report_ = now;
  (*report_)(Progress());
}

int TransferJob::Run(const std::function<void(const TransferProgress&)>& report, const DeliverFn& deliver,
                     const ReleaseFn& release) {
  if (inlet_) return RunInlet(release);
  deliver_ = &deliver;
  if (outlet_) {
    std::lock_guard<std::mutex> lock(outlet_->mu);
    outlet_->wake = [this] { WakeUp(); };
  }
  int rc = WithHandle(source_, "source image", message_, [&](rbd_image_t source) {
    auto with_target = [&](const std::function<int(rbd_image_t)>& run) {
      return target_ == nullptr ? run(nullptr) : WithHandle(target_, "target image", message_, run);
    };
    return with_target([&](rbd_image_t target) {
      if (plan_.snapshot) {
        reader_ = SnapshotReader::Open(source_, *plan_.snapshot, &direct_read_refused_);
        // Each read of the reader lies in one object: the batches of extents
        // (one per io_size block) must too.
        if (reader_ && reader_->object_size() % plan_.io_size != 0) {
          reader_.reset();
          direct_read_refused_ = "the io size does not divide the object size";
        }
      } else {
        direct_read_refused_ = "the snapshot to read was not named";
      }
      int result = listed_ == nullptr
                       ? Transfer(source, target, source, report)
                       : WithHandle(listed_, "listed image", message_,
                                    [&](rbd_image_t listed) { return Transfer(source, target, listed, report); });
      // The reader's ioctx goes while the source (and so its cluster) is
      // still held open; an abandoned job, whose reads may still complete
      // into it, is never freed, and its reader with it.
      if (!abandoned_) reader_.reset();
      return result;
    });
  });
  if (outlet_) {
    // The job may be freed once Run returns: no acknowledgement may wake it.
    std::lock_guard<std::mutex> lock(outlet_->mu);
    outlet_->wake = nullptr;
  }
  // Ops are only ever deleted once finished (or delivered); anything left
  // is a bug, but never a leak. An abandoned job's ops are still librbd's.
  if (!abandoned_) {
    for (Op* op : order_) {
      ReleaseBuffer(op->buffer, op->length);
      delete op;
    }
    order_.clear();
  }
  deliver_ = nullptr;
  return rc;
}

int TransferJob::RunInlet(const ReleaseFn& release) {
  release_ = &release;
  {
    std::lock_guard<std::mutex> lock(inlet_->mu);
    inlet_->wake = [this] { WakeUp(); };
  }
  int rc = WithHandle(target_, "target image", message_, [&](rbd_image_t target) { return Accept(target); });
  {
    // The job may be freed once Run returns: nothing given may wake it,
    // and what it never took goes back.
    std::lock_guard<std::mutex> lock(inlet_->mu);
    inlet_->wake = nullptr;
    inlet_->closed = true;
    released_.insert(released_.end(), inlet_->queue.begin(), inlet_->queue.end());
    inlet_->queue.clear();
  }
  // An abandoned job's ops are still librbd's, and so are the Buffers
  // they write from: those stay referenced for good.
  if (!abandoned_) {
    for (Op* op : order_) {
      if (op->given) released_.push_back(*op->given);
      delete op;
    }
    order_.clear();
  }
  ReleaseGiven();
  release_ = nullptr;
  return rc;
}

// ---- JavaScript entry ------------------------------------------------------

namespace {

struct Settle {
  explicit Settle(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;
  std::unique_ptr<InflightGuard> source_guard;
  std::unique_ptr<InflightGuard> target_guard;
  std::unique_ptr<InflightGuard> listed_guard;
  std::unique_ptr<TransferJob> job;
  // With plan.deliver: gets the pieces read, on the JavaScript thread.
  Napi::FunctionReference on_data;
  int rc = 0;
  ~Settle() {
    // An abandoned job may still be written into by librbd: it is left to
    // the process's exit (its buffers are bounded by the plan's memory).
    if (job && job->abandoned()) (void)job.release();
  }
};

uint64_t U64Field(Napi::Env env, Napi::Object object, const char* key, uint64_t fallback) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined() || value.IsNull()) return fallback;
  return U64Value(env, value, key);
}

Napi::Object StatsObject(Napi::Env env, const TransferJob& job) {
  const TransferStats& s = job.stats();
  Napi::Object result = Napi::Object::New(env);
  result.Set("bytesRead", Napi::BigInt::New(env, static_cast<uint64_t>(s.bytes_read)));
  result.Set("bytesWritten", Napi::BigInt::New(env, static_cast<uint64_t>(s.bytes_written)));
  result.Set("bytesZeroed", Napi::BigInt::New(env, static_cast<uint64_t>(s.bytes_zeroed)));
  result.Set("bytesSkipped", Napi::BigInt::New(env, static_cast<uint64_t>(s.bytes_skipped)));
  result.Set("extents", Napi::Number::New(env, static_cast<double>(s.extents)));
  result.Set("ops", Napi::Number::New(env, static_cast<double>(s.ops)));
  result.Set("objectReads", Napi::Number::New(env, static_cast<double>(s.object_reads)));
  if (job.digests().enabled()) {
    result.Set("blocksHashed", Napi::Number::New(env, static_cast<double>(s.blocks_hashed)));
    // Little-endian entries, as the digest object stores them.
    const auto& entries = job.digests().entries();
    auto table = Napi::Buffer<uint8_t>::New(env, entries.size() * 8);
    for (size_t i = 0; i < entries.size(); ++i) {
      for (int b = 0; b < 8; ++b) table.Data()[i * 8 + b] = static_cast<uint8_t>(entries[i] >> (8 * b));
    }
    result.Set("digests", table);
  }
  result.Set("elapsedMs", Napi::Number::New(env, s.elapsed_ms));
  if (!job.direct_read_refused().empty()) {
    result.Set("directReadRefused", Napi::String::New(env, job.direct_read_refused()));
  }
  return result;
}

// A delivered buffer, done with.
void GiveBack(char* buffer, const std::shared_ptr<BufferPool>& pool) {
  if (buffer == nullptr) return;
  if (pool) {
    pool->Release(buffer);
  } else {
    std::free(buffer);
  }
}

// A delivered piece as JavaScript gets it: its bytes in a Buffer of their
// own, and the promise of their copy there (or neither: a hole).
Napi::Object DeliveredObject(Napi::Env env, Delivered* piece) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("offset", Napi::BigInt::New(env, static_cast<uint64_t>(piece->offset)));
  object.Set("length", Napi::BigInt::New(env, static_cast<uint64_t>(piece->length)));
  if (piece->buffer == nullptr) return object;
  // Memory V8 allocates, which garbage collection frees as soon as the
  // consumer is done with it: handed over as an external buffer, this one
  // waited for its finalizer (RSS grew by ~100 MiB over a 256 MiB export to
  // a slow consumer, against 50-80 MiB copied). The copy runs on the thread
  // pool: the first touch of fresh memory is slow (in this project's VMs up
  // to ~10 ms per 4 MiB), which stalled the event loop for 30-100 ms when
  // copied here, and held up the reads when read straight into it (the
  // reply's copy out of librados, on its one messenger thread, touched it).
  size_t length = static_cast<size_t>(piece->length);
  auto data = Napi::Buffer<char>::New(env, length);
  char* from = piece->buffer;
  char* into = data.Data();
  object.Set("data", data);
  object.Set("copied", RunAsync(env, data, nullptr, [from, into, length, pool = piece->pool](std::string&) {
               std::memcpy(into, from, length);
               GiveBack(from, pool);
               return 0;
             }));
  // The copy gives it back now.
  piece->buffer = nullptr;
  auto pieces = Napi::BigUint64Array::New(env, piece->pieces.size() * 2);
  for (size_t i = 0; i < piece->pieces.size(); ++i) {
    pieces[i * 2] = piece->pieces[i].first;
    pieces[i * 2 + 1] = piece->pieces[i].second;
  }
  object.Set("pieces", pieces);
  if (!piece->zero_runs.empty()) {
    auto runs = Napi::Float64Array::New(env, piece->zero_runs.size() * 2);
    for (size_t i = 0; i < piece->zero_runs.size(); ++i) {
      runs[i * 2] = static_cast<double>(piece->zero_runs[i].first);
      runs[i * 2 + 1] = static_cast<double>(piece->zero_runs[i].second);
    }
    object.Set("zeroRuns", runs);
  }
  return object;
}

}  // namespace

Napi::Value StartTransfer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<InletState> inlet = Inlet::StateOf(info[5]);
  // With an inlet, no source: what is written comes from JavaScript.
  if (inlet != nullptr && !info[0].IsNull()) ThrowInvalid(env, "a transfer from an inlet has no source image");
  ImageWrap* source_wrap = inlet != nullptr ? nullptr : ImageWrap::FromValue(env, info[0]);
  // No target: a job that only hashes.
  ImageWrap* target_wrap = info[1].IsNull() ? nullptr : ImageWrap::FromValue(env, info[1]);
  std::shared_ptr<ImageHandle> source = source_wrap == nullptr ? nullptr : source_wrap->OpenHandle(env);
  std::shared_ptr<ImageHandle> target = target_wrap == nullptr ? nullptr : target_wrap->OpenHandle(env);
  if (source == target) ThrowInvalid(env, "source and target must be different images");
  if (!info[2].IsObject()) ThrowInvalid(env, "transfer plan must be an object");
  Napi::Object options = info[2].As<Napi::Object>();
  // Its own handle: the job holds each handle's shared lock once.
  ImageWrap* listed_wrap = nullptr;
  std::shared_ptr<ImageHandle> listed;
  Napi::Value listed_value = options.Get("listed");
  if (!listed_value.IsUndefined() && !listed_value.IsNull()) {
    listed_wrap = ImageWrap::FromValue(env, listed_value);
    listed = listed_wrap->OpenHandle(env);
    if (listed == source || listed == target) ThrowInvalid(env, "the listed image must be a handle of its own");
  }
  TransferPlan plan;
  Napi::Value from_value = options.Get("fromSnapshot");
  if (from_value.IsString()) plan.from_snapshot = from_value.As<Napi::String>().Utf8Value();
  Napi::Value snapshot_value = options.Get("snapshot");
  if (snapshot_value.IsString()) plan.snapshot = snapshot_value.As<Napi::String>().Utf8Value();
  plan.length = U64Field(env, options, "length", 0);
  plan.step = U64Field(env, options, "step", plan.step);
  plan.first_step = U64Field(env, options, "firstStep", plan.first_step);
  plan.io_size = U64Field(env, options, "ioSize", plan.io_size);
  plan.window = static_cast<uint32_t>(U64Field(env, options, "window", plan.window));
  plan.memory = U64Field(env, options, "memory", plan.memory);
  plan.min_zero_run = U64Field(env, options, "minZeroRun", plan.min_zero_run);
  plan.merge_gap = U64Field(env, options, "mergeGap", plan.merge_gap);
  plan.whole_object = options.Get("wholeObject").ToBoolean();
  plan.target_is_zero = options.Get("targetIsZero").ToBoolean();
  plan.zero_gaps = options.Get("zeroGaps").ToBoolean();
  plan.deliver = options.Get("deliver").ToBoolean();
  plan.align = U64Field(env, options, "align", 0);
  plan.zero_runs = options.Get("zeroRuns").ToBoolean();
  plan.read_every_extent = listed != nullptr || plan.align != 0;
  if (listed != nullptr && (plan.zero_gaps || plan.whole_object)) {
    ThrowInvalid(env, "a listed image goes with exact extents and no zeroGaps");
  }
  plan.drain_ms = U64Field(env, options, "drainMs", plan.drain_ms);
  plan.start = U64Field(env, options, "start", 0);
  if (plan.start > plan.length) ThrowInvalid(env, "start lies beyond the length");
  if (plan.step == 0 || plan.io_size == 0 || plan.io_size > (64ull << 20) ||
      plan.window == 0 || plan.window > 1024 || plan.memory < plan.io_size) {
    ThrowInvalid(env, "transfer plan out of range (step, ioSize <= 64 MiB, window 1..1024, memory >= ioSize)");
  }
  uint64_t digest_block = U64Field(env, options, "digestBlock", 0);
  if (digest_block != 0) {
    if (plan.io_size % digest_block != 0) ThrowInvalid(env, "digestBlock must divide ioSize");
    uint64_t count = (plan.length + digest_block - 1) / digest_block;
    Napi::Value table_value = options.Get("digests");
    if (!table_value.IsBuffer() || table_value.As<Napi::Buffer<uint8_t>>().Length() != count * 8) {
      ThrowInvalid(env, "digests must be a Buffer of 8 bytes per digestBlock of the length");
    }
    auto table = table_value.As<Napi::Buffer<uint8_t>>();
    std::vector<uint64_t> entries(count);
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t entry = 0;
      for (int b = 7; b >= 0; --b) entry = (entry << 8) | table.Data()[i * 8 + b];
      entries[i] = entry;
    }
    plan.digests = DigestTable(std::move(entries), digest_block, plan.length);
    Napi::Value extra_value = options.Get("extraBlocks");
    if (extra_value.IsArray()) {
      auto extra = extra_value.As<Napi::Array>();
      for (uint32_t i = 0; i < extra.Length(); ++i) {
        uint64_t index = U64Value(env, extra.Get(i), "extra block");
        if (index >= count) ThrowInvalid(env, "an extra block lies beyond the length");
        plan.extra_blocks.push_back(index);
      }
    }
    plan.no_listing = options.Get("noListing").ToBoolean();
    if (plan.start % digest_block != 0 && plan.start != plan.length) {
      ThrowInvalid(env, "start must be a multiple of digestBlock (or the length)");
    }
  } else if (target == nullptr && !plan.deliver) {
    ThrowInvalid(env, "a transfer without a target only hashes or delivers: it needs digestBlock and digests, or deliver");
  }
  std::shared_ptr<OutletState> outlet = inlet != nullptr ? nullptr : Outlet::StateOf(info[5]);
  if (inlet != nullptr) {
    if (target == nullptr || listed != nullptr || digest_block != 0 || plan.deliver || plan.zero_gaps ||
        plan.start != 0 || plan.snapshot || plan.from_snapshot) {
      ThrowInvalid(env, "a transfer from an inlet has a target, and no listed image, snapshots, digests, deliver, "
                        "zeroGaps or start");
    }
    if (!info[6].IsFunction()) ThrowInvalid(env, "a transfer from an inlet needs onWritten");
    std::lock_guard<std::mutex> lock(inlet->mu);
    if (inlet->attached) ThrowInvalid(env, "an inlet serves one transfer");
    inlet->attached = true;
    inlet->window = plan.window;
    inlet->memory = plan.memory;
  }
  if (plan.deliver) {
    if (target != nullptr || listed != nullptr || digest_block != 0 || plan.zero_gaps || plan.start != 0) {
      ThrowInvalid(env, "a delivering transfer has no target, listed image, digests, zeroGaps or start");
    }
    if (outlet == nullptr || !info[6].IsFunction()) ThrowInvalid(env, "a delivering transfer needs an outlet and onData");
  } else if (plan.align != 0 || plan.zero_runs || outlet != nullptr) {
    ThrowInvalid(env, "align, zeroRuns and an outlet go with deliver");
  }
  if (plan.align != 0 && plan.io_size % plan.align != 0) ThrowInvalid(env, "align must divide ioSize");
  if (target == nullptr && listed != nullptr) ThrowInvalid(env, "a job without a target has no listed image");
  CancelFlag cancel = CancelToken::FlagOf(info[3]);
  Napi::Function on_progress = info[4].IsFunction()
                                   ? info[4].As<Napi::Function>()
                                   : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});

  auto* settle = new Settle(env);
  if (source_wrap != nullptr) {
    settle->source_guard = std::make_unique<InflightGuard>(source_wrap->Value(), source_wrap->Inflight());
  }
  if (target_wrap != nullptr) {
    settle->target_guard = std::make_unique<InflightGuard>(target_wrap->Value(), target_wrap->Inflight());
  }
  if (listed_wrap != nullptr) {
    settle->listed_guard = std::make_unique<InflightGuard>(listed_wrap->Value(), listed_wrap->Inflight());
  }
  if (outlet != nullptr || inlet != nullptr) settle->on_data = Napi::Persistent(info[6].As<Napi::Function>());
  settle->job = std::make_unique<TransferJob>(source, target, listed, std::move(plan), cancel, outlet, inlet);
  EnvState::Get(env)->AddJob(cancel);
  Napi::Promise promise = settle->deferred.Promise();

  auto tsfn = Napi::ThreadSafeFunction::New(env, on_progress, "rbd-backup:transfer", 0, 1);
  EnvState* state = EnvState::Get(env);
  state->ThreadStarted();
  std::thread([settle, tsfn, state, inlet]() mutable {
    auto report = [&tsfn](const TransferProgress& progress) {
      auto* copy = new TransferProgress(progress);
      napi_status status = tsfn.NonBlockingCall(
          copy, [](Napi::Env env, Napi::Function callback, TransferProgress* p) {
            std::unique_ptr<TransferProgress> owned(p);
            // The TypeScript wrapper catches its callback's errors; this only
            // keeps a stray exception from unwinding into Node-API.
            try {
              Napi::Value digests = env.Undefined();
              if (!p->digests.empty()) {
                auto entries = Napi::Buffer<uint8_t>::New(env, p->digests.size() * 8);
                for (size_t i = 0; i < p->digests.size(); ++i) {
                  for (int b = 0; b < 8; ++b) entries.Data()[i * 8 + b] = static_cast<uint8_t>(p->digests[i] >> (8 * b));
                }
                digests = entries;
              }
              callback.Call({Napi::BigInt::New(env, static_cast<uint64_t>(p->done)),
                             Napi::BigInt::New(env, static_cast<uint64_t>(p->total)),
                             Napi::BigInt::New(env, static_cast<uint64_t>(p->bytes_read)),
                             Napi::Number::New(env, static_cast<double>(p->digests_from)), digests});
            } catch (const Napi::Error&) {
            }
          });
      if (status != napi_ok) delete copy;
    };
    DeliverFn deliver = [&tsfn, settle](std::vector<Delivered> pieces) {
      auto* batch = new std::vector<Delivered>(std::move(pieces));
      napi_status status = tsfn.NonBlockingCall(batch, [settle](Napi::Env env, Napi::Function, std::vector<Delivered>* b) {
        std::unique_ptr<std::vector<Delivered>> owned(b);
        // The TypeScript wrapper catches its callback's errors; Node-API
        // calls throw while a worker thread's environment is terminating
        // (uncaught, that aborts the process), and then whatever was not
        // handed over yet goes back.
        try {
          Napi::Array list = Napi::Array::New(env, owned->size());
          for (size_t i = 0; i < owned->size(); ++i) list.Set(i, DeliveredObject(env, &(*owned)[i]));
          settle->on_data.Call({list});
        } catch (const Napi::Error&) {
          for (Delivered& piece : *owned) GiveBack(piece.buffer, piece.pool);
        }
      });
      if (status != napi_ok) {
        for (Delivered& piece : *batch) GiveBack(piece.buffer, piece.pool);
        delete batch;
      }
    };
    ReleaseFn release = [&tsfn, settle, inlet](std::vector<Given> pieces) {
      auto* batch = new std::vector<Given>(std::move(pieces));
      napi_status status = tsfn.NonBlockingCall(batch, [settle, inlet](Napi::Env env, Napi::Function, std::vector<Given>* b) {
        std::unique_ptr<std::vector<Given>> owned(b);
        inlet->Release(env, *owned);
        // As with deliver: nothing may throw out of here.
        try {
          settle->on_data.Call({});
        } catch (const Napi::Error&) {
        }
      });
      // Without the environment, their references go with it.
      if (status != napi_ok) delete batch;
    };
    settle->rc = settle->job->Run(report, deliver, release);
    napi_status status = tsfn.BlockingCall(settle, [](Napi::Env env, Napi::Function, Settle* s) {
      std::unique_ptr<Settle> owned(s);
      // Node-API calls throw while a worker thread's environment is
      // terminating; uncaught, that would abort the whole process.
      try {
        if (s->rc < 0) {
          std::string message = s->job->message().empty() ? std::strerror(-s->rc) : s->job->message();
          Napi::Error error = MakeError(env, -s->rc, message);
          error.Set("stats", StatsObject(env, *s->job));
          s->deferred.Reject(error.Value());
        } else {
          s->deferred.Resolve(StatsObject(env, *s->job));
        }
      } catch (const Napi::Error&) {
      }
    });
    // When the environment is already gone the promise cannot settle; the
    // job's handles are released here and the rest dies with the process.
    if (status != napi_ok && !settle->job->abandoned()) settle->job.reset();
    tsfn.Release();
    state->ThreadEnded();
  }).detach();
  return promise;
}

}  // namespace rbdnative
