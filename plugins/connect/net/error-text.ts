// The message of anything thrown, for this plugin's log lines. The same as the plugin API's
// `errors.text`; the modules here that log run below the command and are handed a logger, not the API.
export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));
