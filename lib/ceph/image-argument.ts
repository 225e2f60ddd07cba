/**
 * The check that an argument is an open image handle: a caller from
 * JavaScript (or past TypeScript with a cast) gets an InvalidArgumentError
 * saying what was expected, not a TypeError from deep inside the operation.
 */
import { invalidArgument } from './errors.js';
import { Image } from './image.js';
import { describeValue } from './validate.js';

/** An open image handle (Pool.openImage), as `field` of `operation`'s arguments. */
export function checkImage(field: string, value: unknown, operation: string): Image {
  if (!(value instanceof Image)) {
    throw invalidArgument(operation, 'arguments', `${field} must be an Image (from Pool.openImage), got ${describeValue(value)}`);
  }
  return value;
}
