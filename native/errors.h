// Native failures become JavaScript errors carrying the positive errno and
// its symbolic code; lib/ceph/errors.ts turns them into typed CephErrors.
#pragma once

#include <napi.h>

#include <string>

namespace rbdnative {

// 'ENOENT' for ENOENT and so on; 'E<number>' for codes without a name here.
std::string ErrnoCode(int err);

// err is a positive errno. The message says what failed, never a secret.
Napi::Error MakeError(Napi::Env env, int err, const std::string& message);

}  // namespace rbdnative
