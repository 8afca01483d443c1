/** errno-style codes carried by every error the API throws. */
export type ErrnoCode = 'EINVAL' | 'ENOMEM' | 'EFAULT' | 'EAGAIN' | 'ENOENT' | 'EPERM' | 'EEXIST' | 'EACCES' | 'EBUSY' | 'EBADF' | 'ENODEV' | 'ENOSPC';

const BY_NUMBER: Record<number, ErrnoCode> = {
  1: 'EPERM', 2: 'ENOENT', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 28: 'ENOSPC',
};

/** A value as an error message shows it: never throws (symbols, bigints, objects without toString). */
export function shown(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null || typeof v === 'symbol') return String(v);
  if (typeof v === 'function') return 'a function';
  return Array.isArray(v) ? 'an array' : `an object`;
}

/** An options argument: undefined (no options) or an object; anything else is EINVAL naming `arg`. */
export function optionsArg<T extends object>(o: T | undefined, arg = 'opts'): T | undefined {
  if (o !== undefined && (o === null || typeof o !== 'object' || Array.isArray(o))) throw new EmuError('EINVAL', `${arg} must be an object of options, got ${shown(o)}`, arg);
  return o;
}

/** table[key] when key is one of the table's own names (never an inherited one like 'toString'). */
export function ownEntry<T>(table: Readonly<Record<string, T>>, key: unknown): T | undefined {
  return typeof key === 'string' && Object.hasOwn(table, key) ? table[key] : undefined;
}

/**
 * The one error class of the API. `code` is the errno the kernel would return,
 * `arg` names the offending argument when there is one. A call that throws
 * leaves the machine exactly as it was.
 */
export class EmuError extends Error {
  readonly code: ErrnoCode;
  readonly arg: string | undefined;

  constructor(code: ErrnoCode, message: string, arg?: string) {
    super(`${code}: ${message}`);
    this.name = 'EmuError';
    this.code = code;
    this.arg = arg;
  }

  /** From a negative errno returned by the core. */
  static fromErrno(errno: number, message: string, arg?: string): EmuError {
    return new EmuError(BY_NUMBER[-errno] ?? 'EINVAL', message, arg);
  }
}
