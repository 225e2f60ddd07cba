/**
 * The checks that an argument is an open image handle (or a source and a
 * target): a caller from JavaScript (or past TypeScript with a cast) gets an
 * InvalidArgumentError saying what was expected, not a TypeError from deep
 * inside the operation.
 */
import { invalidArgument } from './errors.js';
import { Image } from './image.js';
import { checkOptions, describeValue } from './validate.js';

/** An open image handle (Pool.openImage), as `field` of `operation`'s arguments. */
export function checkImage(field: string, value: unknown, operation: string): Image {
  if (!(value instanceof Image)) {
    throw invalidArgument(operation, 'arguments', `${field} must be an Image (from Pool.openImage), got ${describeValue(value)}`);
  }
  return value;
}

/** The options of a job from one image into another: an object whose source and target are Images. */
export function checkSourceAndTarget(options: unknown, operation: string): { source: Image; target: Image } {
  const { source, target } = checkOptions(options as { source?: unknown; target?: unknown }, operation);
  return { source: checkImage('options.source', source, operation), target: checkImage('options.target', target, operation) };
}
