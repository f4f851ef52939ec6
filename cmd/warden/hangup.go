package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// onHangup calls reload on every SIGHUP until ctx ends (`systemctl reload
// warden` sends one). Each caller gets its own notification.
func onHangup(ctx context.Context, reload func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload()
			}
		}
	}()
}
