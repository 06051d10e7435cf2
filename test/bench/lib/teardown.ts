/**
 * Everything a benchmark sets up registers how to undo it here, and it is undone in
 * reverse order exactly once: at the end, on an error, on Ctrl-C or SIGTERM, and on an
 * uncaught exception. A benchmark leaves no process, namespace or directory behind.
 */
export class Teardown {
  private readonly steps: Array<{ name: string, undo: () => Promise<void> | void }> = []
  private running?: Promise<void>
  private readonly controller = new AbortController()

  /** Aborted on Ctrl-C, SIGTERM or an uncaught error: start nothing new. */
  get signal (): AbortSignal {
    return this.controller.signal
  }

  /** Registers an undo step; steps run last-in, first-out. */
  add (name: string, undo: () => Promise<void> | void): void {
    this.steps.push({ name, undo })
  }

  /** Runs every step (once, however often it is called); a failing step does not stop the rest. */
  async run (): Promise<void> {
    this.running ??= (async () => {
      // bounded: each step is removed before it runs
      for (let step = this.steps.pop(); step != null; step = this.steps.pop()) {
        try {
          await step.undo()
        } catch (err) {
          process.stderr.write(`teardown: ${step.name} failed: ${(err as Error).message}\n`)
        }
      }
    })()
    await this.running
  }

  /** Tears down before the process dies of a signal or an uncaught error. */
  installExitHandlers (): void {
    const die = (code: number) => (reason: unknown): void => {
      if (reason instanceof Error) {
        process.stderr.write(`${reason.stack ?? reason.message}\n`)
      } else if (typeof reason === 'string') {
        process.stderr.write(`interrupted by ${reason}; tearing down\n`)
      }
      this.controller.abort(reason)
      void this.run().finally(() => process.exit(code))
    }
    process.once('SIGINT', die(130))
    process.once('SIGTERM', die(143))
    process.once('uncaughtException', die(1))
    process.once('unhandledRejection', die(1))
  }
}
