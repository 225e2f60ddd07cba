// NativeImage.read(offset, length), .readMany(offsets, lengths) and
// .write(data, offset): librbd aio that holds no thread of the pool while
// it is in flight.
#pragma once

#include <napi.h>

#include "env_state.h"
#include "image.h"

namespace rbdnative {

Napi::Value AioRead(ImageWrap& wrap, const Napi::CallbackInfo& info);
Napi::Value AioReadMany(ImageWrap& wrap, const Napi::CallbackInfo& info);
Napi::Value AioWrite(ImageWrap& wrap, const Napi::CallbackInfo& info);

// The cleanup hook, once every image is closed: completions still queued
// are not delivered to the environment being torn down.
void ShutDownAio(EnvState* state);

}  // namespace rbdnative
