/** Logger of the backup semantics (rbd-backup:backup). */
import createDebug from 'debug';

export const logBackup = createDebug('rbd-backup:backup');
