// syncfs(2) for backups in files: one call makes every file written to a
// file system durable, where a sync per file would cost a disk round trip
// each (an incremental writes thousands of small objects).
#pragma once

#include <napi.h>

namespace rbdnative {

// syncFileSystem(path): Promise<void>, on the thread pool; rejects with the errno of open or syncfs.
Napi::Value SyncFileSystem(const Napi::CallbackInfo& info);

}  // namespace rbdnative
