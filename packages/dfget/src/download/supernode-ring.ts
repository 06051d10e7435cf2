import { createHash } from 'node:crypto'

/** Largest number of supernodes a daemon may be configured with. */
export const MAX_SUPERNODES = 64

/**
 * The rendezvous (highest random weight) score of a task on a supernode: the first
 * 8 bytes of sha256(taskId, NUL, identity), as an unsigned integer. Every daemon
 * computes the same score from the same strings, so they agree without talking.
 */
export function rendezvousScore (taskId: string, identity: string): bigint {
  return createHash('sha256').update(taskId).update('\0').update(identity).digest().readBigUInt64BE(0)
}

export interface RingMember {
  /** What the task is hashed against: the supernode's address as configured. */
  readonly id: string
}

/**
 * Which supernode a task goes to, and where it moves when that one is down:
 * rendezvous hashing over the configured supernodes. A task's first choice is the
 * supernode with the highest score; the rest follow in score order. Adding or removing
 * one supernode moves only the tasks whose first choice it is (about 1/n of them).
 */
export class SupernodeRing<T extends RingMember> {
  readonly members: readonly T[]

  /** @throws {RangeError} with no members, more than {@link MAX_SUPERNODES}, or two with the same id */
  constructor (members: readonly T[]) {
    if (members.length === 0 || members.length > MAX_SUPERNODES) {
      throw new RangeError(`between 1 and ${MAX_SUPERNODES} supernodes, not ${members.length}`)
    }
    const ids = new Set(members.map(m => m.id))
    if (ids.size !== members.length) {
      throw new RangeError('the same supernode is configured twice')
    }
    this.members = [...members]
  }

  /** Every member, best first for this task (ties, which sha256 all but rules out, by id). */
  order (taskId: string): T[] {
    if (this.members.length === 1) {
      return [...this.members]
    }
    return this.members
      .map(member => ({ member, score: rendezvousScore(taskId, member.id) }))
      .sort((a, b) => a.score === b.score ? (a.member.id < b.member.id ? -1 : 1) : (a.score > b.score ? -1 : 1))
      .map(s => s.member)
  }

  /** The supernode this task goes to while every supernode answers. */
  owner (taskId: string): T {
    return this.order(taskId)[0] as T
  }
}
