// GUP references: m.pin (FOLL_PIN) and m.get (FOLL_GET). A Pin is what a
// driver holds after pin_user_pages: the frames, DMA through them, unpin.

import type { Core } from './core.js';
import { EmuError, shown } from './errors.js';
import type { Process } from './process.js';
import { toBigAddr, checkAligned, checkUserRange, type Geometry } from './addr.js';

/** BLOCKED_UFFD of assembly/constants.ts: the fault a GUP took waits on a userfaultfd. */
const BLOCKED_UFFD = 3;

/** Options of m.pin / m.get. */
export interface PinOptions {
  /** FOLL_WRITE: the device will write; breaks COW first. Default false. */
  write?: boolean;
  /** FOLL_LONGTERM: also unshares file pages of private mappings for read-only pins. Default false. */
  longterm?: boolean;
  /** pin_user_pages_fast: a lockless walk first, the slow (faulting) path for what it refuses. Default false. */
  fast?: boolean;
}

const GUP_WRITE = 1, GUP_PIN = 2, GUP_LONGTERM = 4, GUP_FAST = 8;
const MAX_GUP_PAGES = 1 << 24;

/** References taken on user pages; `kind` says whether they are pins or plain gets. */
export class Pin {
  readonly kind: 'pin' | 'get';
  /** The frame of every page, in address order (the zero page is never pinned, but listed). */
  readonly frames: readonly number[];
  /** Pages the lockless GUP-fast walk took (0 unless `fast`). */
  readonly fastPages: number;
  private readonly core: Core;
  private id: number;

  /** @internal */
  constructor(core: Core, id: number, kind: 'pin' | 'get', frames: number[], fastPages: number) {
    this.core = core;
    this.id = id;
    this.kind = kind;
    this.frames = Object.freeze(frames);
    this.fastPages = fastPages;
  }

  get released(): boolean { return this.id === 0; }

  private frameAt(i: unknown): number {
    if (this.id === 0) throw new EmuError('EINVAL', 'the pin was released', 'pin');
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= this.frames.length) {
      throw new EmuError('EINVAL', `index must be an integer below ${this.frames.length}, got ${shown(i)}`, 'index');
    }
    return this.frames[i]!;
  }

  /** A device write of `tag` into page i of the pin: lands in the frame whatever maps it now. */
  dmaWrite(i: number, tag: number): void {
    const pfn = this.frameAt(i);
    if (typeof tag !== 'number' || !Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) {
      throw new EmuError('EINVAL', `tag must be a 32-bit unsigned integer, got ${shown(tag)}`, 'tag');
    }
    this.core.x.dmaWriteTag(pfn, tag);
  }

  /** A device read of page i: the tag its frame holds. */
  dmaRead(i: number): number {
    return this.core.x.frameTag(this.frameAt(i)) >>> 0;
  }

  /** unpin_user_pages / put_page: drops every reference (a page unmapped meanwhile is freed now). */
  unpin(): void {
    if (this.id === 0) throw new EmuError('EINVAL', 'the pin was already released', 'pin');
    this.core.x.gupUnpin(this.id);
    this.id = 0;
  }
}

/** @internal m.pin / m.get */
export function takeUserPages(core: Core, g: Geometry, p: Process, addr: unknown, npages: unknown,
  opts: PinOptions | undefined, kind: 'pin' | 'get'): Pin {
  const start = toBigAddr(addr, 'addr');
  checkAligned(start, 'addr');
  if (typeof npages !== 'number' || !Number.isInteger(npages) || npages < 1 || npages > MAX_GUP_PAGES) {
    throw new EmuError('EINVAL', `npages must be an integer from 1 to ${MAX_GUP_PAGES}, got ${shown(npages)}`, 'npages');
  }
  const o: PinOptions = opts ?? {};
  if (o === null || typeof o !== 'object') throw new EmuError('EINVAL', 'options must be an object', 'opts');
  for (const k of Object.keys(o)) {
    if (k !== 'write' && k !== 'longterm' && k !== 'fast') throw new EmuError('EINVAL', `unknown ${kind} option ${k}`, k);
    if (typeof (o as Record<string, unknown>)[k] !== 'boolean') throw new EmuError('EINVAL', `${k} must be a boolean`, k);
  }
  checkUserRange(g, start, BigInt(npages) * 4096n, 'addr', 'EINVAL');
  const flags = (o.write ? GUP_WRITE : 0) | (kind === 'pin' ? GUP_PIN : 0) | (o.longterm ? GUP_LONGTERM : 0) | (o.fast ? GUP_FAST : 0);
  const id = core.x.gup(p.pid, Number(start >> 12n), npages, flags);
  core.takeHookError();
  if (id === -11) {
    const why = core.result(1) === BLOCKED_UFFD ? 'a userfaultfd must resolve the fault it took (see its events())' : '->page_mkwrite blocked the write fault it took';
    throw new EmuError('EAGAIN', `the ${kind} had to wait: ${why}`, 'addr');
  }
  if (id === -14) throw new EmuError('EFAULT', `range 0x${start.toString(16)}+${npages} pages is not fully mapped with the access the ${kind} needs`, 'addr');
  if (id < 0) throw EmuError.fromErrno(id, `${kind} of ${npages} pages failed`, 'npages');
  const fastPages = core.result(0);
  const base = core.x.gupPinPfns(id);
  const frames: number[] = new Array<number>(npages);
  for (let i = 0; i < npages; i++) frames[i] = core.u32At(base + i * 4);
  return new Pin(core, id, kind, frames, fastPages);
}
