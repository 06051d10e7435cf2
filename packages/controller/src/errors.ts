import { InvalidConfigError, ShoalError } from '@shoal/core'

/** The inventory file is missing, not YAML, or does not match the schema (each problem names its line and field). */
export class InventoryError extends InvalidConfigError {
  override name = 'InventoryError'
}

/** A command on a host could not be run, or exited non-zero where that means failure. */
export class HostCommandError extends ShoalError {
  override name = 'HostCommandError'
  override readonly code = 'ERR_HOST_COMMAND'
}

/** A host's health gate (the daemon's /healthz, then a pull through the mirror) failed. */
export class HealthGateError extends ShoalError {
  override name = 'HealthGateError'
  override readonly code = 'ERR_HEALTH_GATE'
}

/** The release bundle is missing or not one `dfctl bundle` made. */
export class BundleError extends ShoalError {
  override name = 'BundleError'
  override readonly code = 'ERR_BUNDLE'
}
