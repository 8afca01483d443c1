/**
 * What the native peers share: finding their C source (next to this file in
 * the source tree, or in the package's bench/peers/ once compiled to dist/),
 * finding a C compiler, and turning a failed child process into a message.
 */
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const run = promisify(execFile);

/** Tried in order; `cc` is whatever the system considers its C compiler. */
export const COMPILERS = ['cc', 'gcc', 'clang'] as const;

/** The path of a peer's C source, or null when it is not shipped. */
export async function findSource(file: string): Promise<string | null> {
  for (const url of [new URL(`./${file}`, import.meta.url), new URL(`../../../bench/peers/${file}`, import.meta.url)]) {
    const path = fileURLToPath(url);
    try {
      await access(path);
      return path;
    } catch {
      // try the next location
    }
  }
  return null;
}

/** The first compiler that runs, with the first line of its version banner. */
export async function findCompiler(): Promise<{ command: string; version: string } | null> {
  for (const command of COMPILERS) {
    try {
      const { stdout } = await run(command, ['--version']);
      return { command, version: stdout.split('\n')[0]?.trim() ?? '' };
    } catch {
      // not installed (or not runnable): try the next one
    }
  }
  return null;
}

export function errorText(error: unknown): string {
  if (error instanceof Error) {
    // execFile errors carry the child's stderr, which is the useful part.
    const stderr = (error as Error & { stderr?: unknown }).stderr;
    if (typeof stderr === 'string' && stderr.trim() !== '') {
      return stderr.trim();
    }
    return error.message;
  }
  return String(error);
}
