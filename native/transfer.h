// The copy engine: moves the extents of a source image (opened at a
// snapshot) into a target image on a thread of its own, with a bounded window
// of reads whose buffers go straight into librbd aio writes, and
// write-zeroes (or nothing, on an empty target) for holes and zero runs.
// The extents of one object are read together: in one RADOS operation when
// the snapshot's objects can be read directly (snapshot_reader.h), and
// with the small gaps between them, so they are written with fewer
// operations too.
#pragma once

#include <napi.h>
#include <rbd/librbd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "buffer_pool.h"
#include "cancel.h"
#include "digest.h"
#include "handles.h"
#include "inlet.h"
#include "outlet.h"
#include "snapshot_reader.h"

namespace rbdnative {

struct TransferPlan {
  // Changes since this snapshot of the source; whole history when empty.
  std::optional<std::string> from_snapshot;
  // The snapshot the source image is open at: its objects are then read
  // directly where that gives what librbd would read.
  std::optional<std::string> snapshot;
  // Cover [0, length) of the source.
  uint64_t length = 0;
  // Bytes looked at per rbd_diff_iterate2 call (the "chunk").
  uint64_t step = 1ull << 30;
  // The first call looks at this many bytes, and each next one at four
  // times as many up to step: data starts moving after a short listing
  // rather than after a whole step's (exact listing costs a round trip per
  // changed object). Zero: step.
  uint64_t first_step = 0;
  // Largest single aio read/write; a divisor of the object size, so that
  // the extents read together all lie in one object.
  uint64_t io_size = 4ull << 20;
  // Changed extents of one io_size block this close together are read and
  // written as one, the bytes in between included: those are unchanged
  // since the from-snapshot, which the target holds too, so writing them
  // changes nothing, and one operation costs more than a few KiB of data.
  uint64_t merge_gap = 0;
  // Most aio operations in flight.
  uint32_t window = 64;
  // Most bytes of read buffers in flight: bounds memory whatever the
  // volume size, while small extents still get many operations in flight.
  // With deliver, the most bytes held: half of it for the reads in flight
  // (their buffers stay with the job, reused), half for the copies of
  // what was read that JavaScript has not taken yet.
  uint64_t memory = 64ull << 20;
  bool whole_object = false;
  // The target reads as zeros wherever the source does not have data, so
  // holes and zero runs need no write at all.
  bool target_is_zero = false;
  // Write zeros over the holes between extents too: the target may hold
  // old data there (a full copy into a used image).
  bool zero_gaps = false;
  // Set when the extents are listed on another image than the source (the
  // job's `listed` image, its changes since from_snapshot): every one of
  // them is then read from the source, whether the listed image holds
  // data there or not.
  bool read_every_extent = false;
  // Zero runs shorter than this inside read data are written as data:
  // splitting a write for a small run costs more than it saves.
  uint64_t min_zero_run = 64ull << 10;
  // Once the transfer stops (a failure or a cancel), how long the
  // operations still in flight get to complete. librados ops end within
  // their op timeout; librbd can keep an aio queued for good (a write
  // waiting for an exclusive lock another client does not give up, or
  // left behind when this client was blocklisted), so the job gives up on
  // them then instead of waiting forever.
  uint64_t drain_ms = 30000;
  // Digests of the end snapshot's blocks, when enabled: every block the
  // transfer touches is read whole (at most block-1 bytes more on each
  // side of a changed extent, in the same operation) and hashed; blocks
  // that became holes get the zero digest. Untouched blocks keep their
  // entry (the parent's digests, or the zero digest for a whole-history
  // transfer). The block size divides io_size.
  DigestTable digests;
  // Blocks hashed besides those the listing touches (a resize moved the
  // image's last block; a sample).
  std::vector<uint64_t> extra_blocks;
  // Only the extra blocks: no listing at all.
  bool no_listing = false;
  // Where a resumed transfer starts: everything below is on the target
  // already (and, with digests, the table's entries for the blocks below
  // are final). A multiple of the digest block.
  uint64_t start = 0;
  // Hand what is read to JavaScript, in offset order, instead of writing
  // it (no target): a stream export reads through the same window, direct
  // object reads and diff prefetch as a transfer. Holes are handed over as
  // pieces without data. Each piece counts against the window until
  // JavaScript acknowledges it (outlet.h).
  bool deliver = false;
  // With deliver: every extent is widened to whole blocks of this size (a
  // divisor of io_size; the last block ends at length) and read, holes
  // included, for a reader that hashes blocks. 0: exact extents.
  uint64_t align = 0;
  // With deliver: the zero runs of min_zero_run bytes or more in what is
  // read are found here, off the JavaScript thread.
  bool zero_runs = false;
};

// What a delivering job hands over: one read operation's pieces, back to
// back in its buffer, or a hole.
struct Delivered {
  uint64_t offset = 0;
  // The buffer's bytes, or the hole's length.
  uint64_t length = 0;
  // The receiver's to give back to pool, or (no pool) to free(). Null
  // for a hole.
  char* buffer = nullptr;
  std::shared_ptr<BufferPool> pool;
  std::vector<std::pair<uint64_t, uint64_t>> pieces;  // image offset, length
  // [start, end) of the zero runs, as positions in the buffer.
  std::vector<std::pair<uint64_t, uint64_t>> zero_runs;
};
using DeliverFn = std::function<void(std::vector<Delivered>)>;
// Where a writing job (an inlet) sends the pieces it is done with, for
// their Buffers to be let go on the JavaScript thread.
using ReleaseFn = std::function<void(std::vector<Given>)>;

struct TransferStats {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_zeroed = 0;
  uint64_t bytes_skipped = 0;
  uint64_t extents = 0;
  uint64_t ops = 0;
  // Read operations that went straight to the snapshot's objects.
  uint64_t object_reads = 0;
  uint64_t blocks_hashed = 0;
  double elapsed_ms = 0;
};

struct TransferProgress {
  // Every byte of the source below this offset is done.
  uint64_t done = 0;
  uint64_t total = 0;
  uint64_t bytes_read = 0;
  // With digests: the final entries of the blocks that came to lie wholly
  // below done since the last report, from block digests_from on (what a
  // checkpoint of a resumable transfer stores).
  uint64_t digests_from = 0;
  std::vector<uint64_t> digests;
};

class TransferJob {
 public:
  // listed (may be null: the source) is the image whose diff names the
  // extents to move. target may be null: the job then only hashes (a
  // verification), which needs plan.digests, or delivers what it reads
  // (plan.deliver), which needs the outlet. With an inlet, source and
  // listed are null: the job writes what JavaScript gives it into target,
  // in the order given (a piece waits for the earlier ones it overlaps),
  // with the plan's window, memory and target_is_zero.
  TransferJob(std::shared_ptr<ImageHandle> source,
              std::shared_ptr<ImageHandle> target,
              std::shared_ptr<ImageHandle> listed, TransferPlan plan,
              CancelFlag cancel, std::shared_ptr<OutletState> outlet = nullptr,
              std::shared_ptr<InletState> inlet = nullptr);
  ~TransferJob();
  TransferJob(const TransferJob&) = delete;
  TransferJob& operator=(const TransferJob&) = delete;

  // Runs the whole transfer on the calling thread. report is called now and
  // then (at most every 100 ms) with the progress so far. Returns 0 or a
  // negative errno; message() then says what failed where. With
  // plan.deliver, deliver gets the pieces read, in offset order; with an
  // inlet, release gets the pieces given that the job is done with.
  int Run(const std::function<void(const TransferProgress&)>& report, const DeliverFn& deliver = nullptr,
          const ReleaseFn& release = nullptr);
  const TransferStats& stats() const { return stats_; }
  const DigestTable& digests() const { return plan_.digests; }
  const std::string& message() const { return message_; }
  // Why the snapshot's objects were read through librbd, if they were.
  const std::string& direct_read_refused() const { return direct_read_refused_; }
  // Whether it gave up on operations still in flight: librbd may yet
  // complete them into this job's buffers and completion queue, so the
  // job must never be freed.
  bool abandoned() const { return abandoned_; }

 private:
  struct Op;
  enum class Kind { kRead, kWrite, kZero };
  struct Completion {
    TransferJob* job;
    Op* op;
    Kind kind;
    uint64_t offset;
    uint64_t length;
    ssize_t rc = 0;
    // A direct read of the snapshot's objects (a RADOS completion).
    bool direct = false;
  };
  using Pieces = std::vector<std::pair<uint64_t, uint64_t>>;  // offset, length
  // Extents of one io_size block waiting to be read together.
  struct Batch {
    uint64_t block = 0;
    // What is read: the extents, or with digests on, the whole blocks
    // holding them.
    Pieces pieces;
    // What is written, with digests on (else the pieces).
    Pieces writes;
  };

  static void OnComplete(rbd_completion_t c, void* arg);
  static void OnDirectComplete(rados_completion_t c, void* arg);
  void Deliver(Completion* done);

  int Transfer(rbd_image_t source, rbd_image_t target, rbd_image_t listed,
               const std::function<void(const TransferProgress&)>& report);
  // Run with an inlet: the target held open, what is given written.
  int RunInlet(const ReleaseFn& release);
  // With an inlet: writes what is given until the inlet ends.
  int Accept(rbd_image_t target);
  // Writes one given piece once the earlier pieces it overlaps are written.
  void AcceptPiece(rbd_image_t target, const Given& piece);
  bool OverlapsInFlight(uint64_t offset, uint64_t length) const;
  // With an inlet: hands the pieces done with back to JavaScript.
  void ReleaseGiven();
  void IssueHole(rbd_image_t source, rbd_image_t target, uint64_t offset, uint64_t length);
  // Reads block `index` of the digest table only to hash it.
  void IssueHashOnly(rbd_image_t source, rbd_image_t target, uint64_t index);
  // Hashes the whole digest blocks of a read op's buffer.
  void HashPieces(Op* op);
  // Adds a data extent to the batch, issuing the batch first when the
  // extent starts a new block.
  void AddData(rbd_image_t source, rbd_image_t target, uint64_t offset, uint64_t length);
  // Starts the reads of the batch, if it holds anything.
  void IssueBatch(rbd_image_t source, rbd_image_t target);
  void IssueReads(rbd_image_t source, Op* op);
  // Creates done's completion and runs submit with it; false (and the
  // failure recorded) when either could not start.
  bool StartAio(Completion* done, const char* what,
                const std::function<int(rbd_completion_t)>& submit);
  void IssueZero(rbd_image_t target, Op* op, uint64_t offset, uint64_t length);
  void IssueWrite(rbd_image_t target, Op* op, uint64_t offset, uint64_t length,
                  const char* data);
  void Handle(rbd_image_t target, Completion* done);
  void WriteRuns(rbd_image_t target, Op* op, uint64_t offset, uint64_t length, char* data);
  void FinishOp(Op* op);
  // Takes the ops at the front of order_ that are finished, and with
  // deliver those read (handed over, or dropped once the job is stopping).
  void PopDone();
  // With deliver: a hole, handed over in its turn.
  void IssueDeliveredHole(uint64_t offset, uint64_t length);
  // With deliver: counts off the pieces JavaScript has taken since.
  void CountTaken();
  // With deliver, while the consumer holds the whole window: gives the
  // process's free heap memory back to the system (malloc_trim), at most
  // every 200 ms. The copies JavaScript drops and librados' reply buffers
  // are 4 MiB each; once freed, glibc raises its mmap threshold above that
  // size and serves the next ones from heaps that keep their freed pages:
  // a slow consumer's RSS grew by 45-97 MiB over a 256 MiB export (with
  // the threshold fixed by MALLOC_MMAP_THRESHOLD_, 42 MiB), with this
  // 45-61 MiB.
  void TrimWhileWaiting();
  // Waits for completions (handling them) until an op needing `bytes` of
  // buffer fits in the window and the memory budget.
  void WaitForRoom(rbd_image_t target, uint64_t bytes);
  // Waits for every op in flight; once the transfer is stopping, for
  // plan_.drain_ms at most (then Abandon()).
  void WaitAll(rbd_image_t target);
  // The end of a run: waits for what is in flight, sees a cancel, flushes
  // the target (if any) when nothing failed, and records the elapsed time.
  void Conclude(rbd_image_t target, std::chrono::steady_clock::time_point started);
  // Gives up on the ops in flight: the handles they are queued on are
  // marked stuck and the failure says which.
  void Abandon();
  // Blocklists this connection's own address; what the failure says of it.
  std::string FenceSelf();
  // Handles the completions that arrived, waiting briefly for one (or for
  // a WakeUp) when there are none.
  void HandleCompleted(rbd_image_t target);
  // Ends a HandleCompleted wait early (the next diff range is ready).
  void WakeUp();
  void Fail(int rc, std::string message);
  bool Stopping() const;
  char* AcquireBuffer(uint64_t length);
  void ReleaseBuffer(char* buffer, uint64_t length);
  TransferProgress Progress();
  // Reports Progress() through report_ (while Transfer runs), every 100 ms
  // at most; never once the job is stopping. Only where every extent
  // gathered is in order_ or batch_ (not between the two).
  void MaybeReport();

  std::shared_ptr<ImageHandle> source_;
  std::shared_ptr<ImageHandle> target_;
  std::shared_ptr<ImageHandle> listed_;
  TransferPlan plan_;
  std::unique_ptr<SnapshotReader> reader_;
  std::string direct_read_refused_;
  Batch batch_;
  CancelFlag cancel_;
  std::shared_ptr<OutletState> outlet_;
  const DeliverFn* deliver_ = nullptr;
  std::shared_ptr<InletState> inlet_;
  const ReleaseFn* release_ = nullptr;
  // Written (or dropped once the job is stopping), not yet released.
  std::vector<Given> released_;
  // Delivered and not yet acknowledged: still in the window.
  uint64_t handed_ops_ = 0;
  uint64_t handed_bytes_ = 0;
  std::chrono::steady_clock::time_point last_trim_;
  TransferStats stats_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Completion*> completed_;
  bool woken_ = false;

  uint32_t in_flight_ = 0;
  // Aio started and not yet handled, by side.
  uint32_t reads_pending_ = 0;
  uint32_t writes_pending_ = 0;
  bool abandoned_ = false;
  uint64_t in_flight_bytes_ = 0;
  std::deque<Op*> order_;  // ops in issue (= offset) order, for progress
  uint64_t position_ = 0;  // how far extents have been issued
  uint64_t reported_done_ = 0;  // progress never goes back
  const std::function<void(const TransferProgress&)>* report_ = nullptr;
  std::chrono::steady_clock::time_point last_report_;
  uint64_t reported_blocks_ = 0;  // digest entries handed to a report
  // With digests on: every block below this was (or is being) read whole.
  uint64_t hashed_end_ = 0;
  // The io_size buffers (smaller reads malloc() their own).
  std::shared_ptr<BufferPool> buffers_;
  int error_ = 0;
  std::string message_;
};

// JavaScript entry: transfer(source, target, plan, cancelToken, onProgress,
// outlet | inlet, onData | onWritten) -> Promise<stats>. source and target
// are NativeImages; target null only hashes (plan.digests required) or
// delivers (outlet); source null writes what the inlet is given.
Napi::Value StartTransfer(const Napi::CallbackInfo& info);

}  // namespace rbdnative
