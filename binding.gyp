{
  "targets": [
    {
      "target_name": "rbd_backup",
      "sources": [
        "native/addon.cc",
        "native/aio_io.cc",
        "native/args.cc",
        "native/cancel.cc",
        "native/chunked_digests.cc",
        "native/cluster.cc",
        "native/codec.cc",
        "native/digest.cc",
        "native/diff.cc",
        "native/diff_prefetch.cc",
        "native/env_state.cc",
        "native/file_sync.cc",
        "native/errors.cc",
        "native/handle.cc",
        "native/handles.cc",
        "native/image.cc",
        "native/inlet.cc",
        "native/object_file.cc",
        "native/object_lock.cc",
        "native/outlet.cc",
        "native/pool.cc",
        "native/snapshot.cc",
        "native/snapshot_reader.cc",
        "native/transfer.cc",
        "native/watch.cc",
        "native/zero_runs.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lrados", "-lrbd", "-lzstd", "-lbz2"]
    }
  ]
}
