/**
 * Loggers under the rbd-backup:* namespaces of `debug`. Nothing logged here
 * may contain a key: callers pass only names, sizes and outcomes.
 */
import createDebug from 'debug';

export const logCeph = createDebug('rbd-backup:ceph');
