/** errno-style codes carried by every error the API throws. */
export type ErrnoCode = 'EINVAL' | 'ENOMEM' | 'EFAULT' | 'EAGAIN' | 'ENOENT' | 'EPERM' | 'EEXIST' | 'EACCES' | 'EBUSY' | 'EBADF' | 'ENODEV' | 'ENOSPC';

const BY_NUMBER: Record<number, ErrnoCode> = {
  1: 'EPERM', 2: 'ENOENT', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 28: 'ENOSPC',
};

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
