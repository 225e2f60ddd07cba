/**
 * The fault suite's test-infrastructure accounting, without a cluster: a
 * daemon's crash read from its log, which daemons of a cluster directory
 * are gone (by pid files and /proc), the table's columns for runs lost to
 * a dead cluster, and the line that reports a lost cluster.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lastCrash, ThrowawayCluster } from '../../lib/dev/throwaway-cluster.js';
import { renderTable } from '../../faults/outcome.js';
import { describeLoss } from '../../faults/suite.js';

/** The memstore OSD's crash in a full fault run (2026-11-30), as its log has it (long lines cut). */
const SNAP_TRIM_CRASH = `2026-11-30T12:04:30.412+0000 7fe48f7e66c0  0 <cls> ./src/cls/lock/cls_lock.cc:291: Could not read list of current lockers off disk: (2) No such file or directory
2026-11-30T12:04:31.416+0000 7fe48f7e66c0 -1 *** Caught signal (Segmentation fault) **
 in thread 7fe48f7e66c0 thread_name:tp_osd_tp

 ceph version 16.2.15 (618f440892089921c3e944a991122ddc44e60516) pacific (stable)
 1: /lib/x86_64-linux-gnu/libc.so.6(+0x3c050) [0x7fe4b585a050]
 2: (ceph::buffer::v15_2_0::ptr::ptr(ceph::buffer::v15_2_0::ptr const&)+0x13) [0x555a4b65c993]
 3: (ceph::buffer::v15_2_0::ptr_node::cloner::operator()(ceph::buffer::v15_2_0::ptr_node const&)+0x2a) [0x555a4b65eaea]
 4: (MemStore::OmapIteratorImpl::value()+0x8b) [0x555a4b28485b]
 5: (OSDriver::get_next(std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&, std::pair<std::__cxx11::basic_string<char>, ceph::buffer::v15_2_0::list>*)+0x3a2) [0x555a4afd1552]
 6: (MapCacher::MapCacher<std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >, ceph::buffer::v15_2_0::list>::get_next(std::__cxx11::basic_string<char>)+0xf7) [0x555a4afda647]
 7: (SnapMapper::get_next_objects_to_trim(snapid_t, unsigned int, std::vector<hobject_t, std::allocator<hobject_t> >*)+0x25b) [0x555a4afd70db]
 8: (PrimaryLogPG::AwaitAsyncWork::react(PrimaryLogPG::DoSnapWork const&)+0x361) [0x555a4af215c1]
 9: (boost::statechart::simple_state<PrimaryLogPG::AwaitAsyncWork, PrimaryLogPG::Trimming>::react_impl(boost::statechart::event_base const&, void const*)+0xff) [0x555a4afa12bf]
 16: /lib/x86_64-linux-gnu/libc.so.6(+0x891f5) [0x7fe4b58a71f5]
 NOTE: a copy of the executable, or \`objdump -rdS <executable>\` is needed to interpret this.

--- begin dump of recent events ---
 -1316> 2026-11-30T12:03:39.252+0000 7fe4b5c241c0  5 asok(0x555a78cf60a0) register_command assert hook 0x555a78d4aa80
`;

describe('lastCrash', () => {
  test('reads the signal, its time and the Ceph frames of the memstore snap-trimmer segfault', () => {
    const crash = lastCrash(SNAP_TRIM_CRASH);
    assert.ok(crash);
    assert.equal(crash.what, 'Caught signal (Segmentation fault)');
    assert.equal(crash.at?.toISOString(), '2026-11-30T12:04:31.416Z');
    assert.deepEqual(crash.frames, [
      'MemStore::OmapIteratorImpl::value', 'OSDriver::get_next', 'MapCacher::MapCacher::get_next',
      'SnapMapper::get_next_objects_to_trim', 'PrimaryLogPG::AwaitAsyncWork::react',
    ]);
  });

  test('a log without a crash report has none', () => {
    assert.equal(lastCrash('2026-11-30T12:04:30.412+0000 7fe48f7e66c0  0 osd.0 up\n'), undefined);
    assert.equal(lastCrash(''), undefined);
  });

  test('a failed assertion is one', () => {
    const crash = lastCrash('2026-11-30T12:00:00.000+0000 7f00 -1 ./src/osd/PG.cc: 99: FAILED ceph_assert(x)\n' +
      ' 1: (ceph::__ceph_assert_fail(char const*, char const*, int, char const*)+0x1) [0x1]\n 2: (PG::f()+0x2) [0x2]\n');
    assert.ok(crash);
    assert.match(crash.what, /FAILED ceph_assert\(x\)/);
    assert.deepEqual(crash.frames, ['ceph::__ceph_assert_fail', 'PG::f']);
  });
});

describe('ThrowawayCluster.goneDaemons', () => {
  test('a daemon counts as running only by a pid file naming a live process with the cluster conf', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'gone-daemons-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'run'));
    const conf = join(dir, 'ceph.conf');
    const cluster = ThrowawayCluster.attach({ dir, conf, keyring: join(dir, 'keyring'), monHost: 'v2:127.0.0.1:1' });
    assert.deepEqual(await cluster.goneDaemons(), ['mon.a', 'osd.0']);

    // A stand-in daemon: a process whose command line names the conf, as ceph-mon's and ceph-osd's do.
    const daemon = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', '--conf', conf], { stdio: 'ignore' });
    t.after(() => daemon.kill('SIGKILL'));
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    t.after(() => other.kill('SIGKILL'));
    writeFileSync(join(dir, 'run', 'mon.a.pid'), `${daemon.pid}\n`);
    // A pid file naming another process (a pid reused) is no daemon of the cluster.
    writeFileSync(join(dir, 'run', 'osd.0.pid'), `${other.pid}\n`);
    assert.deepEqual(await cluster.goneDaemons(), ['osd.0']);
    // The launch pid file is enough (a daemon writes its own pid file only once well into its start).
    writeFileSync(join(dir, 'run', 'osd.0.launch.pid'), `${daemon.pid}\n`);
    assert.deepEqual(await cluster.goneDaemons(), []);

    daemon.kill('SIGKILL');
    await once(daemon, 'exit');
    assert.deepEqual(await cluster.goneDaemons(), ['mon.a', 'osd.0']);
  });
});

describe('the suite\'s account of lost clusters', () => {
  test('the table counts runs lost to the infrastructure and runs not run in columns of their own', () => {
    const text = renderTable([{ scenario: 'live-writes', outcomes: [], lost: 1, notRun: 2 }]);
    const [header, , row] = text.split('\n');
    assert.match(header!, /infra: lost\s+not run$/);
    assert.match(row!, /^live-writes\s+0\s+0\s+0\s+0\s+0\s+0\s+0\s+0\s+-\s+1\s+2$/);
  });

  test('a lost cluster is described as infrastructure, with the stopped run and the fresh cluster', () => {
    const line = describeLoss({
      kind: 'memstore', cluster: 'memstore', minutes: 12.34, cause: 'osd.0 crashed: Caught signal (Segmentation fault)',
      during: 'live-writes run 6 (seed 1)', replacement: 'memstore-2', logs: '/tmp/logs/memstore',
    });
    assert.match(line, /^the memstore cluster was lost 12\.3 min into the suite, during live-writes run 6 \(seed 1\), which was stopped \(no verdict\) and runs again/);
    assert.match(line, /memstore-2/);
    assert.match(line, /its logs: \/tmp\/logs\/memstore$/);
    const after = describeLoss({ kind: 'memstore', cluster: 'memstore-2', minutes: 1, cause: 'c', after: 'osd-pause run 2 (seed 3)', replacement: undefined });
    assert.match(after, /between runs \(after osd-pause run 2 \(seed 3\), whose verdict counts as reported\)/);
    assert.match(after, /no more were started, the runs left were not run/);
  });
});
