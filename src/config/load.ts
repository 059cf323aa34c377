import { readFile } from "node:fs/promises";

import { ArborError } from "../errors/index.ts";
import { buildConfig } from "./build.ts";
import {
  environmentLayer,
  flagLayer,
  parseConfigFile,
  SETTING_KEYS,
  type SettingLayer,
} from "./sources.ts";
import type { ArborConfig, LoadConfigOptions } from "./types.ts";

/**
 * Loads the configuration. Each setting comes from the first source that sets it, in the order
 * flags, `ARBOR_*` environment variables, the YAML file, then the default. The merged result is
 * then validated as a whole. Relative paths are kept as written, so they resolve against the
 * working directory of the process. Throws INVALID_ARGUMENT naming the setting, its value and
 * its source.
 */
export async function loadConfig(options: LoadConfigOptions): Promise<ArborConfig> {
  const fileLayer = options.file === undefined ? {} : await readConfigFile(options.file);
  const layers = [flagLayer(options.flags ?? {}), environmentLayer(options.env), fileLayer];
  return buildConfig(mergeLayers(layers));
}

/** Takes each setting from the first layer that has it. */
export function mergeLayers(layers: readonly SettingLayer[]): SettingLayer {
  const merged: SettingLayer = {};
  for (const key of SETTING_KEYS) {
    const setting = layers.find((layer) => layer[key] !== undefined)?.[key];
    if (setting !== undefined) merged[key] = setting;
  }
  return merged;
}

async function readConfigFile(path: string): Promise<SettingLayer> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "read error";
    throw new ArborError(
      "INVALID_ARGUMENT",
      `failed to read configuration file ${path} (${reason}): check the path and its permissions`,
      { parameter: "file", value: path },
      { cause: error },
    );
  }
  return parseConfigFile(text, path);
}
