/**
 * What a fixture child (test/fixtures/*-child.ts) reads from the
 * environment its parent set: FIXTURE_* values, and the cluster named by
 * FIXTURE_CONF and FIXTURE_KEYRING.
 */
import { Cluster, type ConnectOptions } from '../../lib/index.js';

/** A FIXTURE_* variable the parent must have set. */
export function fixtureEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** The parent's cluster, with the tests' timeouts unless options say otherwise. */
export function connectFixture(options: ConnectOptions = {}): Promise<Cluster> {
  return Cluster.connect({ conf: fixtureEnv('FIXTURE_CONF'), keyring: fixtureEnv('FIXTURE_KEYRING'), timeoutMs: 20_000, opTimeoutMs: 60_000, ...options });
}
