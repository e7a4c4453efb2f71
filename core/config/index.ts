export { ktctlHome, userConfigPath, findProjectConfig, PROJECT_CONFIG_NAME, USER_CONFIG_NAME, type ConfigEnv } from "./paths.ts";
export { parseConfigText, readConfigFile, writeConfigFile, type ConfigData } from "./file.ts";
export { loadConfig, EffectiveConfig, isPathSpec, PLUGINS_KEY, type ConfigLayer, type PluginRef } from "./load.ts";
export { configKeys, resolveConfigKey, parseConfigValue, suggestKey, type ConfigKey } from "./keys.ts";
export { setConfigValue, unsetConfigValue, targetConfigPath } from "./edit.ts";
