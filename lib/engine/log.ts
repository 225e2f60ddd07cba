/** Logger of the transfer engine (rbd-backup:engine). */
import createDebug from 'debug';

export const logEngine = createDebug('rbd-backup:engine');
