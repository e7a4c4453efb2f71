// Why a stream into the cluster could not be opened, as the SSH and the direct path both report it.

import { ExitCode, KtctlError } from "../errors.ts";
import type { StreamFailure } from "../protocol/tunnel.ts";

/** The shadow could not open a stream; `reason` says why, as seen from inside the cluster. */
export class StreamOpenError extends KtctlError {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly reason: StreamFailure | "link-lost",
    detail: string,
  ) {
    super(`cannot reach ${host}:${port} from the cluster: ${detail}`, ExitCode.unreachable);
  }
}
