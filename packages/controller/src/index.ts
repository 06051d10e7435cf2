/**
 * @packageDocumentation
 *
 * The Shoal controller (`dfctl`): thin provisioning for a fleet. It will roll the
 * daemon out to hosts from an inventory, point their container runtimes at it, and
 * prefetch release images across the fleet. Today it is only the CLI those commands
 * will hang from; it exports nothing yet.
 */

export {}
