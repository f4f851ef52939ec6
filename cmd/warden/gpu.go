package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/runtime/gpu"
)

func newGPUCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Show the GPUs as NVML sees them (memory, utilization, temperature, power)",
		Long: `Gpu samples NVML once. On a machine without an NVIDIA driver it says so and
exits 0: Warden runs on CPU there. Per-process VRAM of the backend is shown by
the running server at /admin/gpu.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			n := gpu.NewSystemNVML(nil)
			defer n.Close()
			snap, err := n.Sample()
			if errors.Is(err, gpu.ErrNoGPU) {
				if asJSON {
					return writeJSON(g, map[string]any{"available": false, "status": err.Error()})
				}
				_, err = fmt.Fprintln(g.stdout, err) // "no GPU: <why>"
				return err
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g, map[string]any{"available": true, "snapshot": snap})
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GPU\tNAME\tMEMORY\tGPU%\tMEM%\tTEMP\tPOWER\tTHROTTLE")
			for _, d := range snap.Devices {
				fmt.Fprintf(tw, "%d\t%s\t%d/%d MiB\t%d\t%d\t%d°C\t%.0f W\t%v\n", d.Index, d.Name,
					d.MemoryUsed>>20, d.MemoryTotal>>20, d.GPUUtil, d.MemUtil, d.TemperatureC,
					float64(d.PowerMilliwatts)/1000, d.ThrottleReasons)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
