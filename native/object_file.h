// One short object of a backup in Cinder's chunked file layout, stored in
// one job on the thread pool: its data's MD5, its compression (zlib as
// Python's zlib.compress makes it, kept only when smaller: Cinder's rule),
// written under its partial name and given its own. An incremental writes
// thousands of such objects: one job each, not one per step.
#pragma once

#include <napi.h>

namespace rbdnative {

// storeObject(partial, path, data, packing): Promise<{ md5, bytes, compressed }>.
// packing: 'none' (data as is), 'zlib' (compressed here), or a Buffer of
// data already compressed (by another algorithm). The partial file is
// created exclusively and removed if anything fails; the caller syncs.
Napi::Value StoreObject(const Napi::CallbackInfo& info);

}  // namespace rbdnative
