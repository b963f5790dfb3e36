/** Host provisioning: the steps as data, their renders, and the component that runs them over SSH. */
export { HostProvisioner, HOST_PROVISIONER_TYPE, type HostProvisionerArgs } from "./host-provisioner";
export { buildSteps, maskStepScript, remoteCommand, renderRelease, renderStepScript, STEP_NAMES, type HostDirectory, type HostFile, type Step, type StepContext, type StepName } from "./steps";
export { loadHostScripts, type HostScripts } from "./host-scripts";
export { RESERVED_SECRETS, secretRef } from "./placeholders";
