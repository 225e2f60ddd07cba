/** The OSD's client-operation counters (`perf dump` over its admin socket), read around each run to count its operations and bytes. */
import { join } from 'node:path';
import type { BenchCluster } from './clusters.js';
import { run } from './proc.js';
import type { OsdOps } from './results.js';

interface OsdPerfDump {
  osd: { op_r: number; op_w: number; op_rw: number; op_in_bytes: number; op_out_bytes: number };
}

async function read(c: BenchCluster): Promise<OsdOps> {
  const { stdout } = await run('ceph', ['--conf', c.ref.conf, '--admin-daemon', join(c.dir, 'run', 'osd.0.asok'), 'perf', 'dump'],
    { label: `perf dump ${c.name}`, timeoutMs: 30_000, captureStdout: true });
  const { osd } = JSON.parse(stdout) as OsdPerfDump;
  return { opR: osd.op_r, opW: osd.op_w, opRw: osd.op_rw, inBytes: osd.op_in_bytes, outBytes: osd.op_out_bytes };
}

/** The counters of every given cluster's OSD, summed. */
export async function osdCounters(clusters: BenchCluster[]): Promise<OsdOps> {
  const all = await Promise.all(clusters.map(read));
  return all.reduce((sum, c) => ({
    opR: sum.opR + c.opR, opW: sum.opW + c.opW, opRw: sum.opRw + c.opRw,
    inBytes: sum.inBytes + c.inBytes, outBytes: sum.outBytes + c.outBytes,
  }));
}

export function opsDelta(before: OsdOps, after: OsdOps): OsdOps {
  return {
    opR: after.opR - before.opR, opW: after.opW - before.opW, opRw: after.opRw - before.opRw,
    inBytes: after.inBytes - before.inBytes, outBytes: after.outBytes - before.outBytes,
  };
}

export function totalOps(ops: OsdOps): number {
  return ops.opR + ops.opW + ops.opRw;
}
